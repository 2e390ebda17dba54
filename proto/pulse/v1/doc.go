// Package pulsev1 owns the generated Go code of the pulse.v1 gRPC API
// (pulse.proto): the Monitor service and its messages; cluster.proto: the
// Cluster service nodes of a cluster serve each other. Edit the .proto files and
// regenerate; never edit the .pb.go files by hand.
//
// Regenerate with protoc (apt-get install protobuf-compiler), protoc-gen-go
// v1.36.12 and protoc-gen-go-grpc v1.6.2 on PATH:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
//	go generate ./proto/pulse/v1
package pulsev1

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative pulse.proto cluster.proto
