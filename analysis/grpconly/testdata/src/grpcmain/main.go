// The seed's INC-2023-004 server: gRPC health only.
package main

import healthpb "google.golang.org/grpc/health/grpc_health_v1"

type server struct{}

func (server) RegisterService() {}

type health struct{}

func (health) Check() {}

func main() {
	healthpb.RegisterHealthServer(server{}, health{}) // want `this program serves health only over gRPC`
}
