package healthgrpc

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/fb4b1dcc/pulse/health"
)

// Server implements grpc.health.v1.Health over a health.Health.
type Server struct {
	healthpb.UnimplementedHealthServer
	h *health.Health
}

// New returns a Server for h.
func New(h *health.Health) *Server { return &Server{h: h} }

// Register creates a Server for h and registers it on s.
func Register(s grpc.ServiceRegistrar, h *health.Health) *Server {
	srv := New(h)
	healthpb.RegisterHealthServer(s, srv)
	return srv
}

func servingStatus(snap *health.Snapshot, service string) (healthpb.HealthCheckResponse_ServingStatus, bool) {
	serving, known := snap.Serving(service)
	switch {
	case !known:
		return healthpb.HealthCheckResponse_SERVICE_UNKNOWN, false
	case serving:
		return healthpb.HealthCheckResponse_SERVING, true
	default:
		return healthpb.HealthCheckResponse_NOT_SERVING, true
	}
}

// Check answers from the current snapshot; an unknown service is NotFound,
// as the gRPC health protocol specifies.
func (s *Server) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	st, known := servingStatus(s.h.Snapshot(), req.GetService())
	if !known {
		return nil, status.Errorf(codes.NotFound, "unknown service %q", req.GetService())
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

// List returns every known service, the overall state under "".
func (s *Server) List(_ context.Context, _ *healthpb.HealthListRequest) (*healthpb.HealthListResponse, error) {
	snap := s.h.Snapshot()
	out := &healthpb.HealthListResponse{Statuses: map[string]*healthpb.HealthCheckResponse{}}
	st, _ := servingStatus(snap, "")
	out.Statuses[""] = &healthpb.HealthCheckResponse{Status: st}
	for name := range snap.Services() {
		st, _ := servingStatus(snap, name)
		out.Statuses[name] = &healthpb.HealthCheckResponse{Status: st}
	}
	return out, nil
}

// Watch sends the service's status now and whenever it changes. Updates
// arrive through a newest-wins subscription, so a slow client only delays
// itself: the health state's owner never waits for it, and the client
// always gets the latest status rather than a backlog.
func (s *Server) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	updates, cancel := s.h.Subscribe()
	defer cancel()
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	for {
		select {
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		case snap := <-updates:
			st, _ := servingStatus(snap, req.GetService())
			if st == last {
				continue
			}
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
	}
}
