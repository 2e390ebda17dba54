package monitor

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/store"
)

// Cluster mode: the node judges only what it owns, forwards beats of the
// rest, mirrors their states, and takes instances over in grace.
func TestClusterOwnershipMirrorAndTakeover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mine sync.Map // instance → owned
		owns := func(_, inst string) bool { v, ok := mine.Load(inst); return ok && v.(bool) }
		mine.Store("i0", true)
		mine.Store("i1", false)
		var forwarded atomic.Int64
		hooks := &ClusterHooks{Owns: owns, Forward: func(obs []ingest.Observation) { forwarded.Add(int64(len(obs))) }}
		svc := passiveService("api", 2)
		h := start(t, Options{Cluster: hooks}, svc)
		defer h.stop()
		go h.beatLoop("api", time.Second, 60*time.Second, func(string, time.Duration) bool { return true }, []string{"i0", "i1"})
		time.Sleep(10 * time.Second)
		if h.state("api", "i0").State != Alive {
			t.Fatal("owned instance not judged alive")
		}
		if st := h.state("api", "i1").State; st != Unknown || forwarded.Load() < 9 {
			t.Fatalf("foreign instance: %v, %d beats forwarded", st, forwarded.Load())
		}
		// Its owner publishes its state; this node mirrors it.
		h.m.Mirror([]store.Instance{{Service: "api", Instance: "i1", State: "alive", Reason: "first good observation",
			LastBeat: time.Now(), MeanInterval: time.Second, DevInterval: 50 * time.Millisecond}})
		if v := h.state("api", "i1"); v.State != Alive || v.Source != "peer" {
			t.Fatalf("mirrored: %v %q", v.State, v.Source)
		}
		// The owner dies: this node takes i1 over. Beats now reach it.
		mine.Store("i1", true)
		h.m.Reown()
		time.Sleep(20 * time.Second)
		for _, tr := range h.transitions("api", "i1") {
			if tr == "alive→suspect" || tr == "suspect→down" {
				t.Fatalf("takeover caused %s: %v", tr, h.transitions("api", "i1"))
			}
		}
		if v := h.state("api", "i1"); v.State != Alive || v.Beats < 15 {
			t.Fatalf("after takeover: %v with %d beats", v.State, v.Beats)
		}
		time.Sleep(40 * time.Second)
	})
}

// Multi-vantage: a down verdict needs another zone to agree; if it does
// not, the instance stays suspect with the reason.
func TestClusterConfirmation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var agree atomic.Bool
		var asked atomic.Int64
		hooks := &ClusterHooks{Confirm: func(ctx context.Context, service, instance, target string, p ProbeSpec) (bool, string) {
			asked.Add(1)
			if agree.Load() {
				return true, "zone b: connection refused"
			}
			return false, "zone b: healthy in 3ms"
		}}
		svc := activeService("web", 2)
		h := start(t, Options{Cluster: hooks}, svc)
		defer h.stop()
		time.Sleep(5 * time.Second)
		h.net.set(svc.Instances[0].Target, refused)
		time.Sleep(10 * time.Second)
		v := h.state("web", "i0")
		if v.State != Suspect || !contains(v.Reason, "unconfirmed from other zones: zone b: healthy in 3ms") || asked.Load() == 0 {
			t.Fatalf("disagreeing peers: %v %q (asked %d)", v.State, v.Reason, asked.Load())
		}
		agree.Store(true)
		time.Sleep(5 * time.Second)
		if v := h.state("web", "i0"); v.State != Down || !contains(v.Reason, "confirmed by other zones: zone b: connection refused") {
			t.Fatalf("agreeing peers: %v %q", v.State, v.Reason)
		}
	})
}
