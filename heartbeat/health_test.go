package heartbeat_test

import (
	"context"
	"errors"
	"testing"

	"github.com/fb4b1dcc/pulse/health"
	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

func TestFromHealth(t *testing.T) {
	h, err := health.New(health.Options{}, health.Check{Name: "db"}, health.Check{Name: "cache"})
	if err != nil {
		t.Fatal(err)
	}
	f := heartbeat.FromHealth(h)
	if s, r := f(); s != status.Unhealthy || r != wire.ReasonStarting {
		t.Fatalf("before any check: %v %v", s, r)
	}
	h.Set("db", nil)
	h.Set("cache", health.Degradedf("slow"))
	if s, r := f(); s != status.Degraded || r != wire.ReasonDependency {
		t.Fatalf("degraded dependency: %v %v", s, r)
	}
	h.Set("cache", nil)
	if s, _ := f(); s != status.Healthy {
		t.Fatalf("ready: %v", s)
	}
	h.Set("db", errors.New("down"))
	if s, r := f(); s != status.Unhealthy || r != wire.ReasonDependency {
		t.Fatalf("failing dependency: %v %v", s, r)
	}
	h.Set("db", nil)
	h.Shutdown(context.Background())
	if s, r := f(); s != status.Unhealthy || r != wire.ReasonDraining {
		t.Fatalf("draining: %v %v", s, r)
	}
}
