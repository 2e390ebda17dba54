package monitor

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/fb4b1dcc/pulse/probe"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/store"
	"github.com/fb4b1dcc/pulse/store/memory"
	"github.com/fb4b1dcc/pulse/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// One passive instance through every transition, with the reason of each.
func TestPassiveLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Options{}, passiveService("api", 1))
		defer h.stop()
		if st := h.state("api", "i0").State; st != Unknown {
			t.Fatalf("before any beat: %v", st)
		}
		// Beat for 30s: unknown → alive.
		h.beatLoop("api", time.Second, 30*time.Second, func(string, time.Duration) bool { return true }, []string{"i0"})
		if v := h.state("api", "i0"); v.State != Alive || v.Reason != "first good observation" {
			t.Fatalf("after 30s of beats: %v %q", v.State, v.Reason)
		}
		// Silence: suspect within the detector's budget, then down after down_after.
		silentAt := time.Now()
		for h.state("api", "i0").State == Alive {
			time.Sleep(50 * time.Millisecond)
		}
		suspectAfter := time.Since(silentAt)
		v := h.state("api", "i0")
		if v.State != Suspect || !contains(v.Reason, "no beat for") || v.Source != "passive" {
			t.Fatalf("silence: %v %q from %q", v.State, v.Reason, v.Source)
		}
		if suspectAfter > 3*time.Second {
			t.Fatalf("suspect after %v of silence at a 1s interval, want ≤ 3s", suspectAfter)
		}
		time.Sleep(2*time.Second + 100*time.Millisecond)
		if v := h.state("api", "i0"); v.State != Down || !contains(v.Reason, "no beat for") {
			t.Fatalf("after down_after: %v %q", v.State, v.Reason)
		}
		// Hysteresis: two beats are not enough to come back, three are.
		h.beat("api", "i0")
		time.Sleep(time.Second)
		h.beat("api", "i0")
		time.Sleep(time.Second)
		if st := h.state("api", "i0").State; st != Down {
			t.Fatalf("back after 2 beats (recover_after 3): %v", st)
		}
		h.beat("api", "i0")
		synctest.Wait()
		if v := h.state("api", "i0"); v.State != Alive || v.Reason != "recovered: 3 good observations in a row" {
			t.Fatalf("after 3 beats: %v %q", v.State, v.Reason)
		}
		// Self-reported degraded and unhealthy.
		h.beatStatus("api", "i0", status.Degraded, wire.ReasonOverloaded)
		synctest.Wait()
		if v := h.state("api", "i0"); v.State != Degraded || !contains(v.Reason, "overloaded") {
			t.Fatalf("degraded beat: %v %q", v.State, v.Reason)
		}
		h.beat("api", "i0")
		synctest.Wait()
		if st := h.state("api", "i0").State; st != Alive {
			t.Fatalf("healthy again: %v", st)
		}
		h.beatStatus("api", "i0", status.Unhealthy, wire.ReasonDependency)
		synctest.Wait()
		if v := h.state("api", "i0"); v.State != Suspect || !contains(v.Reason, "reports itself unhealthy (dependency)") {
			t.Fatalf("unhealthy beat: %v %q", v.State, v.Reason)
		}
		h.beat("api", "i0")
		synctest.Wait()
		want := []string{"unknown→alive", "alive→suspect", "suspect→down", "down→alive", "alive→degraded", "degraded→alive", "alive→suspect", "suspect→alive"}
		if got := h.transitions("api", "i0"); !has(got, want...) || len(got) != len(want) {
			t.Fatalf("transitions %v, want %v", got, want)
		}
		if err := h.m.Deregister("api", "i0", "scale-in"); err != nil {
			t.Fatal(err)
		}
		if e, ok := h.lastEvent("api", "i0", "left"); !ok || e.Reason != "scale-in" || e.Source != "api" {
			t.Fatalf("deregister event: %+v", e)
		}
		if _, err := h.m.Instance("api", "i0"); err == nil {
			t.Fatal("deregistered instance still listed")
		}
	})
}

// A declared instance that never beats is suspected after the start-up
// grace, not before.
func TestNeverBeatsAfterGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, Options{}, passiveService("api", 1))
		defer h.stop()
		time.Sleep(4 * time.Second)
		if st := h.state("api", "i0").State; st != Unknown {
			t.Fatalf("inside the 5s grace: %v", st)
		}
		time.Sleep(2 * time.Second)
		if v := h.state("api", "i0"); v.State != Suspect || !contains(v.Reason, "no beat since registration") {
			t.Fatalf("after the grace: %v %q", v.State, v.Reason)
		}
	})
}

func activeService(name string, n int) ServiceSpec {
	s := passiveService(name, n)
	s.Passive = PassiveSpec{}
	s.Active = []ProbeSpec{{Name: "http_ready", Module: probe.Module{Kind: probe.KindHTTP}, Interval: time.Second, Timeout: 500 * time.Millisecond}}
	return s
}

// Active probes: retry before counting a failure, degraded from the body,
// a refused port is definitive.
func TestActiveProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := activeService("web", 2)
		h := start(t, Options{}, svc)
		defer h.stop()
		t0, t1 := svc.Instances[0].Target, svc.Instances[1].Target
		time.Sleep(3 * time.Second)
		if h.state("web", "i0").State != Alive || h.state("web", "i1").State != Alive {
			t.Fatal("not alive after 3s of good probes")
		}
		// One failed probe is retried before it counts: no suspicion.
		fails := 1
		h.net.set(t0, func() probe.Result {
			if fails > 0 {
				fails--
				return timedOut(400 * time.Millisecond)
			}
			return ok(time.Millisecond)
		})
		time.Sleep(3 * time.Second)
		if got := h.transitions("web", "i0"); len(got) != 1 {
			t.Fatalf("a single failed probe changed the verdict: %v", got)
		}
		// AP-08: 200 with a failing business code → degraded after one probe.
		h.net.set(t1, func() probe.Result { return degradedAnswer("service degraded") })
		time.Sleep(1100 * time.Millisecond)
		if v := h.state("web", "i1"); v.State != Degraded || v.Reason != "degraded: service degraded" || v.Source != "active:http_ready" {
			t.Fatalf("degraded body: %v %q %q", v.State, v.Reason, v.Source)
		}
		// The port refuses: suspect after the retry, down after down_after.
		h.net.set(t0, refused)
		deadline := time.Now().Add(5 * time.Second)
		for h.state("web", "i0").State != Down && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		v := h.state("web", "i0")
		if v.State != Down || !contains(v.Reason, "probe http_ready failed") || !contains(v.Reason, "(refused): dial tcp: connection refused") {
			t.Fatalf("refused port: %v %q", v.State, v.Reason)
		}
		if len(v.Probes) != 1 || v.Probes[0].Fails < 2 || v.Probes[0].Class != "refused" {
			t.Fatalf("probe view: %+v", v.Probes)
		}
	})
}

// Flap damping: an instance that alternates every 2s is held out
// (degraded, "flapping") and comes back only after its penalty decays.
func TestFlapDamping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := passiveService("api", 1)
		svc.Verdict.DownAfter = 5 * time.Second // it flaps between alive and suspect
		h := start(t, Options{}, svc)
		defer h.stop()
		h.beatLoop("api", time.Second, 5*time.Second, func(string, time.Duration) bool { return true }, []string{"i0"})
		// Alternate healthy and unhealthy every 2s for 20s.
		start := time.Now()
		for time.Since(start) < 20*time.Second {
			st := status.Healthy
			if int(time.Since(start)/(2*time.Second))%2 == 1 {
				st = status.Unhealthy
			}
			h.beatStatus("api", "i0", st, wire.ReasonDependency)
			time.Sleep(time.Second)
		}
		stableAt := time.Now()
		// Now stable and healthy.
		var heldOut bool
		for time.Since(stableAt) < 2*time.Minute {
			h.beat("api", "i0")
			v := h.state("api", "i0")
			if v.State == Alive {
				break
			}
			if v.State == Degraded && contains(v.Reason, "flapping") {
				heldOut = true
			}
			time.Sleep(time.Second)
		}
		back := time.Since(stableAt)
		if !heldOut {
			t.Fatalf("a flapping instance was never held out: %v", h.transitions("api", "i0"))
		}
		// Penalty after 5 flaps ≈ 3500 (decayed); below 750 takes ≳ 60s.
		if back < 30*time.Second || back > 100*time.Second {
			t.Fatalf("back in service %v after stabilising, want the penalty's decay time (30s..100s)", back)
		}
		if h.state("api", "i0").State != Alive {
			t.Fatal("never came back")
		}
	})
}

// Removing an instance from the config: it leaves after the grace, with an
// event; detector state of the others is kept.
func TestApplyRemovesAfterGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := passiveService("api", 2)
		h := start(t, Options{}, svc)
		defer h.stop()
		go h.beatLoop("api", time.Second, 40*time.Second, func(string, time.Duration) bool { return true }, []string{"i0", "i1"})
		time.Sleep(10 * time.Second)
		before := h.state("api", "i0")
		svc2 := svc
		svc2.Instances = svc.Instances[:1]
		if err := h.m.Apply(&Spec{Services: []ServiceSpec{svc2}, Hash: "v2"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(9 * time.Second)
		if _, err := h.m.Instance("api", "i1"); err != nil {
			t.Fatal("removed before its 10s grace")
		}
		time.Sleep(2 * time.Second)
		if _, err := h.m.Instance("api", "i1"); err == nil {
			t.Fatal("still present after its grace")
		}
		if e, ok := h.lastEvent("api", "i1", "left"); !ok || e.Source != "config" {
			t.Fatalf("no left event: %+v", e)
		}
		after := h.state("api", "i0")
		if after.State != Alive || !after.Since.Equal(before.Since) || after.Beats <= before.Beats {
			t.Fatalf("unchanged instance lost state across Apply: %+v → %+v", before, after)
		}
		time.Sleep(20 * time.Second)
	})
}

// Interval changes reach senders through Directives at once.
func TestDirectivesFollowApply(t *testing.T) {
	svc := passiveService("api", 1)
	svc.Passive.Interval = 30 * time.Second
	m, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(&Spec{Services: []ServiceSpec{svc}}); err != nil {
		t.Fatal(err)
	}
	if d := m.Directives("api", "i0"); d.Interval != 30*time.Second {
		t.Fatalf("directive %v", d)
	}
	svc.Passive.Interval = 10 * time.Second
	if err := m.Apply(&Spec{Services: []ServiceSpec{svc}}); err != nil {
		t.Fatal(err)
	}
	if d := m.Directives("api", "i0"); d.Interval != 10*time.Second {
		t.Fatalf("directive after reload %v", d)
	}
	if d := m.Directives("nope", "x"); d.Interval != 0 {
		t.Fatalf("unknown service directive %v", d)
	}
	bad := svc
	bad.Detector.Type = "magic"
	if err := m.Apply(&Spec{Services: []ServiceSpec{bad}}); err == nil {
		t.Fatal("an invalid spec was applied")
	}
	if d := m.Directives("api", "i0"); d.Interval != 10*time.Second {
		t.Fatalf("a rejected spec changed the directive: %v", d)
	}
}

// A young instance (a few beats: the detector's first deadline is long)
// that goes silent is still suspected within the budget: the deadline that
// moved earlier as the detector learned must be honoured.
func TestYoungInstanceSilence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := passiveService("api", 0)
		svc.RegisterByBeats = true
		h := start(t, Options{}, svc)
		defer h.stop()
		h.beatLoop("api", time.Second, 3*time.Second, func(string, time.Duration) bool { return true }, []string{"young"})
		deadline := h.state("api", "young").Deadline
		for h.state("api", "young").State == Alive && time.Since(deadline) < time.Minute {
			time.Sleep(10 * time.Millisecond)
		}
		if late := time.Since(deadline); h.state("api", "young").State != Suspect || late > 2*h.m.opts.Tick {
			t.Fatalf("young instance: %v %v after its detector's deadline", h.state("api", "young").State, late)
		}
	})
}

// Retention: history older than the spec's retention is pruned by the
// store writer (hourly, and at its first snapshot tick).
func TestRetentionPrunes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := memory.New()
		defer st.Close()
		old := store.Event{Seq: 1, Time: time.Now().Add(-48 * time.Hour), Service: "api", Instance: "x", From: "alive", To: "down", Reason: "old"}
		if err := st.Append(context.Background(), []store.Event{old}); err != nil {
			t.Fatal(err)
		}
		svc := passiveService("api", 1)
		m, err := New(Options{Store: st, SnapshotInterval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		m.Apply(&Spec{Services: []ServiceSpec{svc}, Retention: 24 * time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); m.Run(ctx) }()
		time.Sleep(2 * time.Second)
		cancel()
		<-done
		evs, _ := st.Events(context.Background(), store.Query{})
		for _, e := range evs {
			if e.Reason == "old" {
				t.Fatal("an event older than the retention survived")
			}
		}
		if len(evs) == 0 {
			t.Fatal("recent events were pruned too")
		}
	})
}

// A graceful exit: an instance that says it is draining and then stops
// beating leaves (if it registered by its beats) or stays degraded (if
// declared), and is never suspected.
func TestDrainThenSilenceIsALeave(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := passiveService("api", 1)
		svc.RegisterByBeats = true
		h := start(t, Options{}, svc)
		defer h.stop()
		h.beatLoop("api", time.Second, 10*time.Second, func(string, time.Duration) bool { return true }, []string{"i0", "pod-1"})
		for range 3 {
			h.beatStatus("api", "i0", status.Unhealthy, wire.ReasonDraining)
			h.beatStatus("api", "pod-1", status.Unhealthy, wire.ReasonDraining)
			time.Sleep(time.Second)
		}
		time.Sleep(30 * time.Second)
		if got := h.transitions("api", "pod-1"); len(got) != 3 || got[1] != "alive→degraded" || got[2] != "degraded→left" {
			t.Fatalf("beat-registered instance: %v", got)
		}
		if v := h.state("api", "i0"); v.State != Degraded || !contains(v.Reason, "draining") {
			t.Fatalf("declared instance: %v %q", v.State, v.Reason)
		}
		if h.count("suspect") != 0 || h.count("down") != 0 {
			t.Fatalf("a graceful exit was suspected: %v", h.collect())
		}
	})
}

// A first failed probe that is being retried is no evidence either way:
// the instance does not turn alive on it.
func TestFirstFailedProbeIsNotAGoodObservation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := activeService("web", 1)
		h := start(t, Options{}, svc)
		defer h.stop()
		h.net.set(svc.Instances[0].Target, refused)
		time.Sleep(10 * time.Second)
		got := h.transitions("web", "i0")
		for _, tr := range got {
			if tr == "unknown→alive" {
				t.Fatalf("a refusing target turned alive: %v", got)
			}
		}
		if len(got) == 0 || got[0] != "unknown→suspect" {
			t.Fatalf("transitions %v, want unknown→suspect first", got)
		}
	})
}
