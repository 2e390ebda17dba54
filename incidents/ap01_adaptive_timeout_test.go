package incidents

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fb4b1dcc/pulse/detector"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// AP-01 (INC-2023-0891, static threshold). A payment gateway's cross-DC
// RTT rose to 420 ms and its hard-coded 3 s heartbeat timeout dropped
// healthy instances in bulk.
//
// Replay: 200 instances beat every second over one keep-alive connection
// each (so delivery is in order: a beat stuck behind a retransmission holds
// up the ones after it). For the middle third of an 18-minute run the RTT
// steps from 20 ms to 420 ± 80 ms and 2 % of the beats stall for 2.7–3.3 s
// more, so the answer-time p99 of that third is above 3 s, as in the
// incident. One instance crashes in the middle of the high-RTT third.
//
// Pass criterion (pulse): the real monitor, judging with its default
// adaptive detector (protection off, so the detector alone is tested), gives
// zero `down` verdicts to the 199 live instances, and declares the crashed
// one down, with a "no beat for" reason, within the configured detection
// budget: detector ceiling + down_after (+ one judge tick) after its last
// beat arrived. And, since what the incident cost was healthy instances
// taken out of service: no live instance stays out of the healthy set
// (suspect, degraded for flapping) longer than that same budget, the time
// a dead one takes to be declared down. The scenario itself is checked:
// answer-time p99 > 3 s in the middle third, < 100 ms in the first.
//
// The run is 18 minutes of simulated time in a synctest bubble: the
// subject is judging, not the network.

const (
	ap01Instances = 200
	ap01Interval  = time.Second
	ap01Third     = 6 * time.Minute
	ap01Crashed   = 7 // index of the instance that dies
	ap01CrashAt   = ap01Third + ap01Third/2
	ap01StallP    = 0.02
	ap01Ceiling   = 6 * time.Second // detector ceiling in the config below
	ap01DownAfter = 2 * time.Second
	ap01Tick      = 50 * time.Millisecond // the monitor's default judge tick
)

const ap01YAML = `
services:
  - name: gateway
    passive:
      interval: 1s
      jitter: 20ms
      tokens: [{value: gateway-token-0123456789}]
    detector: {type: adaptive, ceiling: 6s}
    protection: {disabled: true}
    verdict: {down_after: 2s, startup_grace: 10s}
    instances:
%s`

func ap01Name(i int) string { return fmt.Sprintf("gw-%02d", i) }

func ap01Config(t *testing.T) string {
	var b strings.Builder
	for i := range ap01Instances {
		fmt.Fprintf(&b, "      - {name: %s}\n", ap01Name(i))
	}
	return fmt.Sprintf(ap01YAML, b.String())
}

// ap01Beat is one beat as it reaches the monitor.
type ap01Beat struct {
	inst   int
	seq    uint64
	sent   time.Duration // when the instance sent it (from the start)
	at     time.Duration // when the monitor reads it
	answer time.Duration // the sender's answer time for it (round trip)
	srtt   time.Duration // the RTT the sender reports in it: its SRTT so far
}

// ap01Schedule generates every instance's beats, seeded, sorted by arrival.
func ap01Schedule(seed uint64) []ap01Beat {
	var all []ap01Beat
	end := 3 * ap01Third
	for i := range ap01Instances {
		r := rand.New(rand.NewPCG(seed, uint64(i)+1))
		uni := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo)+1)) }
		phase := uni(0, ap01Interval)
		var prevAt, prevDone time.Duration
		var srtt time.Duration
		type completion struct{ at, answer time.Duration }
		var pending []completion
		for k := 0; ; k++ {
			sent := phase + time.Duration(k)*ap01Interval + uni(-20*time.Millisecond, 20*time.Millisecond)
			if sent >= end || (i == ap01Crashed && sent >= ap01CrashAt) {
				break
			}
			high := sent >= ap01Third && sent < 2*ap01Third
			var rtt time.Duration
			if high {
				rtt = uni(340*time.Millisecond, 500*time.Millisecond)
			} else {
				rtt = 20*time.Millisecond + time.Duration(r.ExpFloat64()*float64(2*time.Millisecond))
			}
			at := sent + rtt/2
			if high && r.Float64() < ap01StallP {
				at += uni(2700*time.Millisecond, 3300*time.Millisecond)
			}
			at = max(at, prevAt) // in order on one connection
			done := max(at+rtt/2, prevDone)
			prevAt, prevDone = at, done
			// The sender reports the SRTT of the answers it has had.
			for len(pending) > 0 && pending[0].at <= sent {
				a := pending[0].answer
				if srtt == 0 {
					srtt = a
				} else {
					srtt = (7*srtt + a) / 8
				}
				pending = pending[1:]
			}
			all = append(all, ap01Beat{inst: i, seq: uint64(k + 1), sent: sent, at: at, answer: done - sent, srtt: srtt})
			pending = append(pending, completion{done, done - sent})
		}
	}
	slices.SortStableFunc(all, func(a, b ap01Beat) int { return int(a.at - b.at) })
	return all
}

// ap01CheckScenario asserts that the schedule is the incident's.
func ap01CheckScenario(t *testing.T, beats []ap01Beat) {
	t.Helper()
	var low, high []time.Duration
	for _, b := range beats {
		switch {
		case b.sent < ap01Third:
			low = append(low, b.answer)
		case b.sent < 2*ap01Third:
			high = append(high, b.answer)
		}
	}
	pl, ph, mh := quantile(low, 0.99), quantile(high, 0.99), quantile(high, 0.5)
	t.Logf("scenario: answer time p99 %v in the first third, median %v and p99 %v in the high-RTT third", pl, mh, ph)
	if pl >= 100*time.Millisecond || ph <= 3*time.Second || mh < 340*time.Millisecond || mh > 600*time.Millisecond {
		t.Fatalf("the scenario is not the incident's: p99 low %v (want < 100ms), median high %v (want ≈ 420ms), p99 high %v (want > 3s)", pl, mh, ph)
	}
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// ap01Replay delivers the schedule in a synctest bubble: observe is called
// with every group of beats at their arrival instant. It returns at the
// last arrival: the live instances are still beating then.
func ap01Replay(beats []ap01Beat, observe func([]ap01Beat)) {
	start := time.Now()
	for i := 0; i < len(beats); {
		j := i
		for j < len(beats) && beats[j].at == beats[i].at {
			j++
		}
		if d := beats[i].at - time.Since(start); d > 0 {
			time.Sleep(d)
		}
		observe(beats[i:j])
		i = j
	}
}

// ap01Result is what the monitor did in the replay.
type ap01Result struct {
	falseDowns, suspects, degraded int
	falseDownLines                 []string
	outTotal, outMax               time.Duration // live instances out of the healthy set
	outMaxWho                      string
	stillOut                       int
	crashDowns                     []monitor.Event
	crashAfterLast, crashAfterDead time.Duration
	endStates                      []string // instances not in their expected final state
}

// ap01RunMonitor replays the schedule into the real monitor, configured
// from ap01YAML, in a synctest bubble.
func ap01RunMonitor(t *testing.T, beats []ap01Beat) ap01Result {
	lastArrival := time.Duration(0)
	for _, b := range beats {
		if b.inst == ap01Crashed {
			lastArrival = max(lastArrival, b.at)
		}
	}
	yaml := ap01Config(t)
	var r ap01Result
	synctest.Test(t, func(t *testing.T) {
		cfg := parseConfig(t, yaml)
		m, err := monitor.New(monitor.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Apply(&cfg.Spec); err != nil {
			t.Fatal(err)
		}
		w := m.Watch(0)
		defer w.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- m.Run(ctx) }()

		names := make([]string, ap01Instances)
		for i := range names {
			names[i] = ap01Name(i)
		}
		obs := make([]ingest.Observation, 0, ap01Instances)
		ap01Replay(beats, func(group []ap01Beat) {
			obs = obs[:0]
			now := time.Now()
			for _, b := range group {
				obs = append(obs, ingest.Observation{Service: "gateway", Instance: names[b.inst], Source: ingest.Passive,
					Transport: wire.HTTP, Epoch: 1, Seq: b.seq, SentAt: b.sent, ReceivedAt: now, RTT: b.srtt,
					Interval: ap01Interval, Status: status.Healthy})
			}
			m.ObserveBatch(obs)
		})
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("monitor Run: %v", err)
		}

		var evs []monitor.Event
		for {
			got, err := w.Next(nil, 1<<20)
			evs = append(evs, got...)
			if len(got) == 0 || err != nil {
				break
			}
		}
		// Time each live instance spends out of the healthy (traffic) set:
		// suspect, degraded (flap damping) or down.
		outSince := map[string]time.Time{}
		for _, e := range evs {
			if e.Instance == "" {
				continue
			}
			if e.Instance == names[ap01Crashed] {
				if e.To == "down" {
					r.crashDowns = append(r.crashDowns, e)
				}
				continue
			}
			switch e.To {
			case "down":
				r.falseDowns++
				r.falseDownLines = append(r.falseDownLines, fmt.Sprintf("%s at %v: %s", e.Instance, e.Time.Sub(start).Round(time.Millisecond), e.Reason))
			case "suspect":
				r.suspects++
			case "degraded":
				r.degraded++
			}
			if st, _ := monitor.ParseState(e.To); !st.Healthy() {
				if _, out := outSince[e.Instance]; !out {
					outSince[e.Instance] = e.Time
				}
			} else if t0, out := outSince[e.Instance]; out {
				d := e.Time.Sub(t0)
				r.outTotal += d
				if d > r.outMax {
					r.outMax, r.outMaxWho = d, e.Instance
				}
				delete(outSince, e.Instance)
			}
		}
		r.stillOut = len(outSince)
		if len(r.crashDowns) > 0 {
			at := r.crashDowns[0].Time.Sub(start)
			r.crashAfterLast, r.crashAfterDead = at-lastArrival, at-ap01CrashAt
		}
		for i, n := range names {
			v, err := m.Instance("gateway", n)
			if err != nil {
				t.Fatal(err)
			}
			want := monitor.Alive
			if i == ap01Crashed {
				want = monitor.Down
			}
			if v.State != want {
				r.endStates = append(r.endStates, fmt.Sprintf("%s ends %v, want %v (%s)", n, v.State, want, v.Reason))
			}
		}
	})
	return r
}

func TestAP01AdaptiveTimeout(t *testing.T) {
	beats := ap01Schedule(1)
	ap01CheckScenario(t, beats)
	r := ap01RunMonitor(t, beats)
	budget := ap01Ceiling + ap01DownAfter + ap01Tick
	t.Logf("live instances: %d false down, %d suspect transitions, %d degraded (held out for flapping); out of the healthy set %v in total, longest %v (%s), %d still out at the end",
		r.falseDowns, r.suspects, r.degraded, r.outTotal.Round(time.Millisecond), r.outMax.Round(time.Millisecond), r.outMaxWho, r.stillOut)

	t.Run("no-false-down", func(t *testing.T) {
		for _, l := range r.falseDownLines {
			t.Errorf("false down: %s", l)
		}
		for _, l := range r.endStates {
			t.Error(l)
		}
		if len(r.crashDowns) != 1 {
			t.Fatalf("crashed instance: %d down events, want exactly 1", len(r.crashDowns))
		}
		e := r.crashDowns[0]
		t.Logf("crash at %v: down %v after the crash, %v after its last beat arrived (budget %v): %s",
			ap01CrashAt, r.crashAfterDead.Round(time.Millisecond), r.crashAfterLast.Round(time.Millisecond), budget, e.Reason)
		if r.crashAfterLast <= 0 || r.crashAfterLast > budget {
			t.Errorf("crash detected %v after the last beat, want within the budget %v", r.crashAfterLast, budget)
		}
		if !strings.Contains(e.Reason, "no beat for") {
			t.Errorf("crash reason %q, want the detector's \"no beat for\" explanation", e.Reason)
		}
	})

	t.Run("healthy-set", func(t *testing.T) {
		if r.outMax > budget || r.stillOut > 0 {
			t.Errorf("a live instance was out of the healthy set for %v (%d suspect transitions, %d held out as flapping): longer than a crashed one takes to be declared down (%v), a false removal by another name",
				r.outMax, r.suspects, r.degraded, budget)
		}
	})
}

// TestAP01Naive runs the same arrivals through the seed's judges:
//   - fixed-3s: the incident's code, an instance is offline once its last
//     beat is more than 3 s old;
//   - seed-fix: the seed's own fix, timeout = 3 × P99(RTT of the last 100
//     samples) + 50 ms, re-estimated every 5 minutes (pulse's
//     detector.SeedFix baseline implements it as written).
//
// Each must fail the criterion: at least one live instance declared down
// in the high-RTT third. fixed-3s must be clean in the first third (the
// step, not the judge, is what breaks it).
func TestAP01Naive(t *testing.T) {
	beats := ap01Schedule(1)
	ap01CheckScenario(t, beats)

	t.Run("fixed-3s", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var last [ap01Instances]time.Duration
			downs := ap01NaiveJudge(beats,
				func(i int, now time.Duration, _ ap01Beat) { last[i] = now },
				func(i int, now time.Duration) bool { return last[i] > 0 && now-last[i] > 3*time.Second }) // the seed's constant
			t.Logf("fixed 3s: false downs of live instances by third: %v", downs)
			if downs[0] != 0 {
				t.Errorf("fixed 3s dropped %d instances before the RTT step: the replay, not the step, is at fault", downs[0])
			}
			if downs[1] == 0 {
				t.Errorf("fixed 3s gave no false down in the high-RTT third: the replay does not bite")
			}
		})
	})

	t.Run("seed-fix", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var dets [ap01Instances]*detector.SeedFix
			for i := range dets {
				d, err := detector.NewSeedFix(detector.SeedFixConfig{Interval: ap01Interval})
				if err != nil {
					t.Fatal(err)
				}
				dets[i] = d
			}
			downs := ap01NaiveJudge(beats,
				func(i int, now time.Duration, b ap01Beat) { dets[i].Observe(now, b.srtt) },
				func(i int, now time.Duration) bool {
					return dets[i].Deadline() != detector.Never && dets[i].Suspect(now)
				})
			t.Logf("seed's fix (3×P99+50ms, every 5 min): false downs of live instances by third: %v", downs)
			if downs[1] == 0 {
				t.Errorf("the seed's fix gave no false down in the high-RTT third: the replay does not bite")
			}
		})
	})
}

// ap01NaiveJudge replays the schedule into a naive judge: observe records a
// beat, offline says whether an instance is judged offline now. The judge
// looks every tick, as the monitor does; an instance judged offline comes
// back with its next beat. It returns the false downs per third.
func ap01NaiveJudge(beats []ap01Beat, observe func(i int, now time.Duration, b ap01Beat), offline func(i int, now time.Duration) bool) [3]int {
	var mu sync.Mutex
	var down [ap01Instances]bool
	var downs [3]int
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	judged := make(chan struct{})
	go func() {
		defer close(judged)
		tk := time.NewTicker(ap01Tick)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			now := time.Since(start)
			mu.Lock()
			for i := range down {
				if !down[i] && offline(i, now) {
					down[i] = true
					if i != ap01Crashed {
						downs[min(2, int(now/ap01Third))]++
					}
				}
			}
			mu.Unlock()
		}
	}()
	ap01Replay(beats, func(group []ap01Beat) {
		now := time.Since(start)
		mu.Lock()
		for _, b := range group {
			observe(b.inst, now, b)
			down[b.inst] = false
		}
		mu.Unlock()
	})
	cancel()
	<-judged
	return downs
}
