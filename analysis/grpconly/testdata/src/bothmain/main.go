// One state over both protocols, as AP-12 asks.
package main

import (
	"net/http"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

type server struct{}

func (server) RegisterService() {}

type health struct{}

func (health) Check() {}

const livePath = "/livez"

func main() {
	healthpb.RegisterHealthServer(server{}, health{})
	http.HandleFunc("GET "+livePath, func(w http.ResponseWriter, r *http.Request) {})
}
