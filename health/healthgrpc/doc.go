// Package healthgrpc owns the gRPC face of a health.Health: the standard
// grpc.health.v1 Health service (Check, Watch and List) answering from the
// same snapshot as /livez and /readyz, so gRPC clients, grpc_health_probe
// and Kubernetes' gRPC probes agree with the HTTP endpoints (AP-12).
//
// Service names map to check groups (health.Check.Groups); the empty name
// is the overall readiness. While draining every service is NOT_SERVING.
package healthgrpc
