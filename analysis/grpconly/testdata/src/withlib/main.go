// A health library serves HTTP for the program.
package main

import (
	"net/http"

	"example.com/svc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

type server struct{}

func (server) RegisterService() {}

type hs struct{}

func (hs) Check() {}

func main() {
	healthpb.RegisterHealthServer(server{}, hs{})
	_ = http.ListenAndServe(":8080", health.Handler())
}
