package monitor

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fb4b1dcc/pulse/probe"
	"github.com/fb4b1dcc/pulse/store/memory"
)

// AP-16 in miniature: 3 zones × 50 instances beating every second and
// probed every second. At t=30s, 60% of zone a is cut off for two minutes
// (beats stop, probes time out) and one instance of zone a dies for good
// (its port refuses connections). Pass: protection turns on for zone a
// with an event; no cut-off instance becomes down; the dead one is down
// within retries + down_after (+ a probe interval) of its death; when the
// cut heals, protection releases and every cut-off instance is alive.
func TestZoneCutOffIsProtected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := passiveService("shop", 150, "a", "b", "c")
		svc.Active = []ProbeSpec{{Name: "tcp", Module: probe.Module{Kind: probe.KindTCP}, Interval: time.Second, Timeout: 500 * time.Millisecond}}
		h := start(t, Options{}, svc)
		defer h.stop()

		var cut []string
		targets := map[string]string{}
		for _, in := range svc.Instances {
			targets[in.Name] = in.Target
			if in.Zone == "a" && len(cut) < 30 && in.Name != "a-0" {
				cut = append(cut, in.Name)
			}
		}
		isCut := map[string]bool{}
		for _, n := range cut {
			isCut[n] = true
		}
		const dead = "a-0"
		cutFrom, cutTo := 30*time.Second, 150*time.Second
		rnd := rand.New(rand.NewPCG(1, 2))
		go h.beatLoop("shop", time.Second, 200*time.Second, func(in string, at time.Duration) bool {
			if in == dead && at >= cutFrom {
				return false
			}
			if isCut[in] && at >= cutFrom && at < cutTo {
				return false
			}
			return rnd.Float64() > 0.02 // a little ordinary loss
		}, names(svc))

		time.Sleep(cutFrom)
		for _, n := range cut {
			h.net.set(targets[n], func() probe.Result { return timedOut(500 * time.Millisecond) })
		}
		h.net.set(targets[dead], refused)
		diedAt := time.Now()

		var deadDownAfter time.Duration
		maxDown := 0
		for time.Since(diedAt) < cutTo-cutFrom {
			time.Sleep(250 * time.Millisecond)
			v := h.state("shop", dead)
			if v.State == Down && deadDownAfter == 0 {
				deadDownAfter = time.Since(diedAt)
			}
			sv, _ := h.m.Service("shop")
			maxDown = max(maxDown, sv.Down)
			for _, n := range cut {
				if st := h.state("shop", n).State; st == Down {
					t.Fatalf("cut-off instance %s is down at +%v: %q", n, time.Since(diedAt), h.state("shop", n).Reason)
				}
			}
		}
		// Bound: one probe interval to notice, one retry (≤ 1s), down_after 2s.
		if deadDownAfter == 0 || deadDownAfter > 5*time.Second {
			t.Fatalf("the dead instance was down after %v, want within 5s", deadDownAfter)
		}
		if maxDown != 1 {
			t.Fatalf("%d instances down at once during the cut, want only the dead one", maxDown)
		}
		var on *Event
		for _, e := range h.collect() {
			if e.Source == "protection" && e.To == "protection_on" && e.Zone == "a" {
				on = &e
				break
			}
		}
		if on == nil || !contains(on.Reason, "of zone a suspect at once") {
			t.Fatalf("no protection event for zone a: %+v", on)
		}
		protected := 0
		for _, n := range cut {
			if v := h.state("shop", n); v.State == Protected && contains(v.Reason, "protection: ") {
				protected++
			}
		}
		if protected < len(cut)*9/10 {
			t.Fatalf("only %d of %d cut-off instances protected", protected, len(cut))
		}

		// The cut heals: everyone back, protection off.
		for _, n := range cut {
			h.net.set(targets[n], nil)
		}
		time.Sleep(30 * time.Second)
		for _, n := range cut {
			if v := h.state("shop", n); v.State != Alive {
				t.Fatalf("%s after the cut healed: %v %q", n, v.State, v.Reason)
			}
		}
		off := false
		for _, e := range h.collect() {
			if e.Source == "protection" && e.To == "protection_off" && e.Zone == "a" {
				off = true
			}
		}
		if sv, _ := h.m.Service("shop"); !off || sv.Zones[0].Protected {
			t.Fatalf("protection did not release: %+v", sv.Zones[0])
		}
		time.Sleep(50 * time.Second) // let the beat loop finish
	})
}

// The ejection cap: 6 of 10 instances die for certain at once; at most
// half the service is ejected, the rest is held (protected, with the cap
// as reason); as ejected instances recover, the held ones are released one
// by one, spaced by the back-off.
func TestEjectionCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := activeService("db", 10)
		svc.Protection.SuspectShare = 0.99 // only the cap acts here
		h := start(t, Options{}, svc)
		defer h.stop()
		time.Sleep(5 * time.Second)
		for i := range 6 {
			h.net.set(svc.Instances[i].Target, refused)
		}
		time.Sleep(10 * time.Second)
		sv, _ := h.m.Service("db")
		if sv.Down != 5 || sv.Counts["protected"] != 1 {
			t.Fatalf("down %d protected %d, want 5 and 1 (max 50%%): %+v", sv.Down, sv.Counts["protected"], sv.Counts)
		}
		var held InstanceView
		for i := range 6 {
			if v := h.state("db", svc.Instances[i].Name); v.State == Protected {
				held = v
			}
		}
		if !contains(held.Reason, "ejection cap: 5 of 10 instances already down (max 50%)") {
			t.Fatalf("held instance reason %q", held.Reason)
		}
		// One ejected instance recovers: the held one may go, after back-off.
		var recovered string
		for i := range 6 {
			if n := svc.Instances[i].Name; n != held.Instance {
				recovered = svc.Instances[i].Target
				break
			}
		}
		h.net.set(recovered, nil)
		time.Sleep(15 * time.Second)
		if v := h.state("db", held.Instance); v.State != Down {
			t.Fatalf("held instance after a slot freed: %v %q", v.State, v.Reason)
		}
	})
}

// Restart grace: instances keep beating across a monitor restart (with
// its state restored from the store, and without a store); the restarted
// monitor raises no suspect or down for any of them.
func TestRestartRaisesNoDown(t *testing.T) {
	for _, withStore := range []bool{true, false} {
		t.Run(fmt.Sprintf("store=%v", withStore), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := memory.New()
				defer st.Close()
				opts := Options{}
				if withStore {
					opts.Store = st
				}
				svc := passiveService("api", 50)
				svc.RegisterByBeats = true
				svc.Instances = nil // registered by their beats
				var insts []string
				for i := range 50 {
					insts = append(insts, fmt.Sprintf("b%d", i))
				}
				h := start(t, opts, svc)
				beats := func(target *harness, stop chan struct{}) {
					for {
						select {
						case <-stop:
							return
						case <-time.After(time.Second):
						}
						for _, in := range insts {
							target.beat("api", in)
						}
					}
				}
				stop1 := make(chan struct{})
				go beats(h, stop1)
				time.Sleep(30 * time.Second)
				if sv, _ := h.m.Service("api"); sv.Counts["alive"] != 50 {
					t.Fatalf("first monitor: %+v", sv.Counts)
				}
				h.stop()
				close(stop1)
				// The monitor is away for 20s; the fleet keeps running.
				time.Sleep(20 * time.Second)
				m2 := start(t, opts, svc)
				defer m2.stop()
				stop2 := make(chan struct{})
				go beats(m2, stop2)
				time.Sleep(60 * time.Second)
				close(stop2)
				if n := m2.count("suspect") + m2.count("down"); n != 0 {
					t.Fatalf("restarted monitor raised %d suspect/down events: %v", n, m2.collect())
				}
				if sv, _ := m2.m.Service("api"); sv.Counts["alive"] != 50 {
					t.Fatalf("after restart: %+v", sv.Counts)
				}
				if withStore {
					if seq := m2.m.LastSeq(); seq <= h.m.LastSeq() {
						t.Fatalf("event sequence restarted: %d after %d", seq, h.m.LastSeq())
					}
				}
			})
		})
	}
}

// A partition whose victims' detectors expire at different times (their
// learned intervals differ) must not eject the first few before the share
// of suspects reaches the protection threshold: coinciding suspicions hold
// the down verdict until the picture is clear.
func TestStaggeredPartitionHoldsEarlyVictims(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := passiveService("shop", 30, "a", "b", "c")
		h := start(t, Options{}, svc)
		defer h.stop()
		cutAt := map[string]time.Duration{}
		k := 0
		for _, in := range svc.Instances {
			if in.Zone == "a" && k < 6 {
				cutAt[in.Name] = 30*time.Second + time.Duration(k)*1200*time.Millisecond
				k++
			}
		}
		go h.beatLoop("shop", time.Second, 90*time.Second, func(in string, at time.Duration) bool {
			c, ok := cutAt[in]
			return !ok || at < c || at >= 70*time.Second
		}, names(svc))
		time.Sleep(90 * time.Second)
		if n := h.count("down"); n != 0 {
			t.Fatalf("%d downs during a staggered partition: %v", n, h.collect())
		}
		on := false
		for _, e := range h.collect() {
			on = on || (e.To == "protection_on" && e.Zone == "a")
		}
		if !on {
			t.Fatal("protection never turned on for zone a")
		}
		time.Sleep(10 * time.Second)
	})
}

// Instances registered by their beats are forgotten after forget_after
// down; declared ones stay.
func TestForgetAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := passiveService("api", 1)
		svc.RegisterByBeats = true
		svc.Verdict.ForgetAfter = time.Minute
		h := start(t, Options{}, svc)
		defer h.stop()
		h.beatLoop("api", time.Second, 10*time.Second, func(string, time.Duration) bool { return true }, []string{"i0", "pod-7f9c"})
		time.Sleep(3 * time.Minute)
		if _, err := h.m.Instance("api", "pod-7f9c"); err == nil {
			t.Fatal("a beat-registered instance down for longer than forget_after is still listed")
		}
		if e, ok := h.lastEvent("api", "pod-7f9c", "left"); !ok || !contains(e.Reason, "forgotten") {
			t.Fatalf("no forget event: %+v", e)
		}
		if v := h.state("api", "i0"); v.State != Down {
			t.Fatalf("declared instance: %v", v.State)
		}
	})
}

// An instance removed from the configuration leaves quietly: no suspicion
// or down while its removal grace runs (its beats are no longer taken).
func TestRemovedServiceLeavesQuietly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := passiveService("api", 3)
		other := passiveService("web", 1)
		h := start(t, Options{}, svc, other)
		defer h.stop()
		h.beatLoop("api", time.Second, 10*time.Second, func(string, time.Duration) bool { return true }, names(svc))
		if err := h.m.Apply(&Spec{Services: []ServiceSpec{other}}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(15 * time.Second)
		for _, n := range names(svc) {
			got := h.transitions("api", n)
			if len(got) != 2 || got[1] != "alive→left" {
				t.Fatalf("%s: %v, want unknown→alive then alive→left", n, got)
			}
		}
	})
}

// After a zone's protection episode, downs in that zone are released one
// by one with a doubling wait (backoff, then 2×backoff, …), and the pacing
// ends backoff_max after the episode; a crash in another zone meanwhile is
// judged at the ordinary pace. (The soak found a fleet-wide pacing, never
// reset while anything was held by it, keeping crashes in healthy zones
// protected for good under rotating zone faults.)
func TestPacingAfterZoneProtection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		svc := passiveService("web", 90, "a", "b", "c")
		h := start(t, Options{}, svc)
		defer h.stop()
		inZone := func(z string) []string {
			var out []string
			for _, in := range svc.Instances {
				if in.Zone == z {
					out = append(out, in.Name)
				}
			}
			return out
		}
		a, b := inZone("a"), inZone("b")
		cut := map[string]bool{}
		for _, n := range a[:12] { // 40% of zone a
			cut[n] = true
		}
		dead := map[string]bool{a[0]: true, a[1]: true, a[2]: true} // die inside the cut
		const cutFrom, cutTo, bDies = 30 * time.Second, 60 * time.Second, 75 * time.Second
		bDead := b[0]
		go h.beatLoop("web", time.Second, 200*time.Second, func(in string, at time.Duration) bool {
			switch {
			case dead[in] && at >= cutFrom, in == bDead && at >= bDies:
				return false
			case cut[in] && at >= cutFrom && at < cutTo:
				return false
			}
			return true
		}, names(svc))
		time.Sleep(190 * time.Second)

		t0 := time.Now().Add(-190 * time.Second)
		at := func(e Event) time.Duration { return e.Time.Sub(t0).Round(100 * time.Millisecond) }
		var off time.Duration
		var releases []time.Duration
		bDown := time.Duration(0)
		for _, e := range h.collect() {
			switch {
			case e.To == "protection_on" && e.Zone == "a" && off > 0:
				t.Fatalf("zone a protected again at %v", at(e))
			case e.To == "protection_off" && e.Zone == "a":
				off = at(e)
			case e.To == "down" && dead[e.Instance]:
				releases = append(releases, at(e))
				if !contains(e.Reason, "confirmed after protection") {
					t.Errorf("%s down with reason %q", e.Instance, e.Reason)
				}
			case e.To == "down" && e.Instance == bDead:
				bDown = at(e)
			case e.To == "down":
				t.Fatalf("false down: %s at %v: %s", e.Instance, at(e), e.Reason)
			}
		}
		if off == 0 || len(releases) != 3 {
			for _, e := range h.collect() {
				if e.To != "alive" {
					t.Logf("%v %s %s→%s %s", at(e), e.Instance, e.From, e.To, e.Reason)
				}
			}
			t.Fatalf("protection of zone a off at %v, releases %v; want an episode and 3 downs", off, releases)
		}
		t.Logf("zone a protection off at %v; its dead released at %v; zone b's crash (at %v) down at %v", off, releases, bDies, bDown)
		// Paced: the first after backoff (5s), then gaps of ≥ 10s and ≥ 20s,
		// all within backoff_max (1m) of the episode's end.
		if releases[0] < off+5*time.Second || releases[1]-releases[0] < 10*time.Second || releases[2]-releases[1] < 20*time.Second {
			t.Errorf("releases %v after protection off at %v: want ≥ 5s, then gaps ≥ 10s and ≥ 20s", releases, off)
		}
		if releases[2] > off+time.Minute+2*time.Second {
			t.Errorf("last release %v, more than backoff_max after the episode (%v)", releases[2], off)
		}
		// Zone b is not held by zone a's pacing: detection (≈ 3s) +
		// down_after (2s), nothing more.
		if bDown == 0 || bDown-bDies > 7*time.Second {
			t.Errorf("zone b's crash at %v was down at %v: held up by another zone's pacing", bDies, bDown)
		}
	})
}
