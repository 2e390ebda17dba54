package heartbeat

import (
	"github.com/fb4b1dcc/pulse/health"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// FromHealth makes beats carry a health.Health's state: the same state
// the service's /readyz and grpc.health.v1 answer with, read from its
// snapshot (no lock, no I/O on the beat path). Draining says so, so the
// monitor takes the instance out of traffic without judging it failed.
func FromHealth(h *health.Health) StatusFunc {
	return func() (status.Status, wire.Reason) {
		s := h.Snapshot()
		switch {
		case s.Draining:
			return status.Unhealthy, wire.ReasonDraining
		case !s.Live:
			return status.Unhealthy, wire.ReasonDependency
		case s.Ready:
			if s.Status == status.Degraded {
				return status.Degraded, wire.ReasonDependency
			}
			return status.Healthy, wire.ReasonNone
		}
		for _, c := range s.Checks {
			if c.Runs == 0 {
				return status.Unhealthy, wire.ReasonStarting
			}
		}
		if s.Status == status.Degraded {
			return status.Degraded, wire.ReasonDependency
		}
		return status.Unhealthy, wire.ReasonDependency
	}
}
