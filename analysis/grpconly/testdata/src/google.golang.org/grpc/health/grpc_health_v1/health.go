// Package grpc_health_v1 is a minimal stand-in for the generated package.
package grpc_health_v1

type HealthServer interface{ Check() }

type ServiceRegistrar interface{ RegisterService() }

func RegisterHealthServer(s ServiceRegistrar, srv HealthServer) {}
