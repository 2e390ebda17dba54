package monitor

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fb4b1dcc/pulse/probe"
)

// Probes of many targets are spread over the interval (no thundering
// herd), a probe that hangs never delays the others, and a hung target has
// at most one probe in flight.
func TestSchedulerSpreadsAndIsolatesSlowProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := activeService("web", 100)
		svc.Active[0].Timeout = 900 * time.Millisecond
		h := start(t, Options{}, svc)
		defer h.stop()
		var mu sync.Mutex
		starts := map[string][]time.Time{}
		inFlight, maxInFlight := 0, 0
		slow := svc.Instances[0].Target
		for _, in := range svc.Instances {
			tg := in.Target
			h.net.set(tg, func() probe.Result {
				mu.Lock()
				starts[tg] = append(starts[tg], time.Now())
				if tg == slow {
					inFlight++
					maxInFlight = max(maxInFlight, inFlight)
				}
				mu.Unlock()
				if tg == slow {
					r := timedOut(5 * time.Second) // hangs far past its timeout and interval
					mu.Lock()
					inFlight--
					mu.Unlock()
					return r
				}
				return ok(time.Millisecond)
			})
		}
		time.Sleep(20 * time.Second)
		mu.Lock()
		defer mu.Unlock()
		// Spread: in any 100ms of the first full second, at most 3× the
		// even share (10 of 100) start.
		buckets := map[int]int{}
		for tg, ts := range starts {
			if tg == slow {
				continue
			}
			for _, s := range ts {
				buckets[int(s.Sub(ts[0].Truncate(time.Second))/(100*time.Millisecond))%10]++
			}
		}
		total := 0
		for _, n := range buckets {
			total += n
		}
		for b, n := range buckets {
			if n > 3*total/10 {
				t.Fatalf("100ms slot %d holds %d of %d probe starts: not spread", b, n, total)
			}
		}
		// The others kept their 1s schedule: ~20 probes each in 20s.
		for tg, ts := range starts {
			if tg != slow && (len(ts) < 18 || len(ts) > 21) {
				t.Fatalf("%s probed %d times in 20s at a 1s interval", tg, len(ts))
			}
		}
		if maxInFlight != 1 {
			t.Fatalf("%d probes of the hung target in flight at once, want 1", maxInFlight)
		}
		if st := h.m.SchedulerStats(); st.SkippedBusy == 0 {
			t.Fatalf("no skipped runs recorded for the hung target: %+v", st)
		}
	})
}

// The monitor's own connectivity check: when most anchors fail it issues
// no down verdicts at all, and says why; when they recover, it does.
func TestAnchorsIsolation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := activeService("web", 3)
		h := start(t, Options{}, svc)
		defer h.stop()
		spec := &Spec{Services: []ServiceSpec{svc}, Anchors: []string{"tcp://gw-1:22", "tcp://gw-2:22"}, AnchorInterval: time.Second}
		if err := h.m.Apply(spec); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		h.net.set("gw-1:22", func() probe.Result { return timedOut(400 * time.Millisecond) })
		h.net.set("gw-2:22", refused)
		h.net.set(svc.Instances[0].Target, refused) // really dead, but we cannot tell
		time.Sleep(10 * time.Second)
		if iso, why := h.m.Isolated(); !iso || !contains(why, "2 of 2 anchors unreachable") {
			t.Fatalf("isolation %v %q", iso, why)
		}
		v := h.state("web", "i0")
		if v.State != Protected || !contains(v.Reason, "the monitor's own connectivity check fails") {
			t.Fatalf("while isolated: %v %q", v.State, v.Reason)
		}
		h.net.set("gw-1:22", nil)
		h.net.set("gw-2:22", nil)
		time.Sleep(10 * time.Second)
		if iso, _ := h.m.Isolated(); iso {
			t.Fatal("still isolated after the anchors recovered")
		}
		if v := h.state("web", "i0"); v.State != Down {
			t.Fatalf("after recovery the dead instance is %v %q", v.State, v.Reason)
		}
	})
}
