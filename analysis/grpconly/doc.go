// Package grpconly defines an analyzer for AP-12 (INC-2023-004: probe
// semantics mismatch): a main package that registers the gRPC health
// service (grpc.health.v1) but serves no HTTP health endpoint.
//
// Kubernetes httpGet probes, cloud load balancers and most uptime checkers
// speak HTTP; against a gRPC-only server they get 404 (or a protocol
// error) and restart or drain healthy pods, as happened mid-rollout in the
// seed's incident. The analyzer looks for a RegisterHealthServer call from
// google.golang.org/grpc/health/grpc_health_v1 in a main package, and
// accepts as an HTTP endpoint any constant in the package that names a
// health-like path (/healthz, /livez, /readyz, /health, /ping…) or an
// import of a health library other than gRPC's own (which may serve HTTP
// for it). Test files are skipped.
//
// Fix: serve the same state over HTTP /livez, /readyz and /healthz too
// (pulse's health and health/healthgrpc packages share one state), or
// point every consumer at the gRPC probe explicitly.
package grpconly
