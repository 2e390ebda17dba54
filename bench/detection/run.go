package detection

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/fb4b1dcc/pulse/bench/internal/child"
	"github.com/fb4b1dcc/pulse/bench/internal/sysinfo"
)

// Role is the child-process body: it reads a Spec, runs the cluster and
// returns a Result.
func Role(ctx context.Context, c *child.Conn) (any, error) {
	var s Spec
	if err := c.Input(&s); err != nil {
		return nil, err
	}
	return runSpec(ctx, s, c.Progress)
}

func runSpec(ctx context.Context, s Spec, progress func(string, ...any)) (*Result, error) {
	if s.N < 4 {
		return nil, fmt.Errorf("detection: N=%d is too small", s.N)
	}
	var (
		cl  cluster
		err error
	)
	start := time.Now()
	switch s.System {
	case "memberlist":
		var mc *mlCluster
		mc, err = newMLCluster(s.N, s.Seed)
		if err == nil {
			if !mc.converged(60 * time.Second) {
				progress("%s: not every member sees every other after 60 s; going on", s.Name())
			}
			cl = mc
		}
	case "pulse":
		relay := s.Scenario == "loss"
		own := 0
		if s.Scenario == "isolate" {
			own = s.Trials
		}
		cl, err = newPulseCluster(s.N, relay, own, s.Seed)
	default:
		err = fmt.Errorf("detection: unknown system %q", s.System)
	}
	if err != nil {
		return nil, err
	}
	defer cl.close()
	progress("%s: %d members up in %.1fs; warming up %v", s.Name(), s.N, time.Since(start).Seconds(), s.Warmup)
	if !sleepCtx(ctx, s.Warmup) {
		return nil, ctx.Err()
	}
	res := &Result{Spec: s}
	switch s.Scenario {
	case "crash":
		err = runCrash(ctx, s, cl, res, progress)
	case "loss":
		err = runLoss(ctx, s, cl, res, progress)
	case "isolate":
		err = runIsolate(ctx, s, cl, res, progress)
	default:
		err = fmt.Errorf("detection: unknown scenario %q", s.Scenario)
	}
	if s.Scenario != "loss" {
		res.PacketsSent, res.PacketsLost, res.DialsSent, res.DialsLost = cl.faultStats()
	}
	return res, err
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// window measures CPU and bytes over a stretch of the run.
type window struct {
	cpu   time.Duration
	bytes int64
	at    time.Time
}

func mark(cl cluster) window {
	return window{cpu: sysinfo.SelfCPU(), bytes: cl.bytes(), at: time.Now()}
}

func (w window) into(cl cluster, r *Result) {
	end := mark(cl)
	r.CPU = (end.cpu - w.cpu).Seconds()
	r.Bytes = end.bytes - w.bytes
	r.Secs = end.at.Sub(w.at).Seconds()
}

func runCrash(ctx context.Context, s Spec, cl cluster, res *Result, progress func(string, ...any)) error {
	w := mark(cl)
	if !sleepCtx(ctx, s.Steady) {
		return ctx.Err()
	}
	w.into(cl, res)
	progress("%s: steady window done (%.1f CPU-s, %d bytes in %.0fs); crashing %d members", s.Name(), res.CPU, res.Bytes, res.Secs, s.Crashes)
	crashedAt := map[int]time.Time{}
	for k := range s.Crashes {
		i := s.N - 1 - k
		crashedAt[i] = time.Now()
		cl.crash(i)
		if !sleepCtx(ctx, s.CrashEvery) {
			return ctx.Err()
		}
	}
	// Wait for every crash to be seen, at most Tail after the last.
	deadline := time.Now().Add(s.Tail)
	for time.Now().Before(deadline) {
		if detectedAll(cl, crashedAt) {
			break
		}
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return ctx.Err()
		}
	}
	evs := cl.events()
	dead := cl.deadState()
	// Observers that never crashed.
	var live []int
	for o := range cl.observers() {
		if _, c := crashedAt[o]; !c || cl.observers() == 1 {
			live = append(live, o)
		}
	}
	for i, at := range crashedAt {
		first := math.NaN()
		seen := map[int]float64{}
		for _, e := range evs {
			if e.Subject != i || e.To != dead || e.At.Before(at) {
				continue
			}
			d := e.At.Sub(at).Seconds()
			if math.IsNaN(first) || d < first {
				first = d
			}
			if _, ok := seen[e.Observer]; !ok {
				seen[e.Observer] = d
			}
		}
		if math.IsNaN(first) {
			res.Undetected++
			continue
		}
		res.Detect = append(res.Detect, first)
		if cl.observers() > 1 {
			all, ok := 0.0, true
			for _, o := range live {
				d, has := seen[o]
				if !has {
					ok = false
					break
				}
				all = max(all, d)
			}
			if ok {
				res.DetectAll = append(res.DetectAll, all)
			}
		}
	}
	if cl.observers() == 1 {
		// pulse: the monitor's reasons for the slowest detection.
		slow, slowT := -1, 0.0
		for i, at := range crashedAt {
			for _, e := range evs {
				if e.Subject == i && e.To == dead && !e.At.Before(at) {
					if d := e.At.Sub(at).Seconds(); d > slowT {
						slow, slowT = i, d
					}
					break
				}
			}
		}
		for _, e := range evs {
			if e.Subject == slow && !e.At.Before(crashedAt[slow]) {
				res.Notes = append(res.Notes, fmt.Sprintf("+%.2f s %s: %s", e.At.Sub(crashedAt[slow]).Seconds(), e.To, e.Reason))
			}
		}
	}
	sort.Float64s(res.Detect)
	sort.Float64s(res.DetectAll)
	// False verdicts about members that never crashed, over the whole run.
	falseVerdicts(evs, dead, cl.observers(), func(i int) bool { _, c := crashedAt[i]; return !c }, time.Time{}, time.Now(), res)
	progress("%s: %d/%d crashes detected", s.Name(), len(res.Detect), s.Crashes)
	return nil
}

func detectedAll(cl cluster, crashedAt map[int]time.Time) bool {
	evs := cl.events()
	dead := cl.deadState()
	for i, at := range crashedAt {
		found := false
		for _, e := range evs {
			if e.Subject == i && e.To == dead && !e.At.Before(at) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if cl.observers() == 1 {
		return true
	}
	// memberlist: also wait (within the tail) for every live member to know.
	n := cl.observers()
	for i, at := range crashedAt {
		seen := map[int]bool{}
		for _, e := range evs {
			if e.Subject == i && e.To == dead && !e.At.Before(at) {
				seen[e.Observer] = true
			}
		}
		if len(seen) < n-len(crashedAt) {
			return false
		}
	}
	return true
}

// falseVerdicts counts verdicts in [from, to] about members for which
// alive(i) holds.
func falseVerdicts(evs []event, dead string, observers int, alive func(int) bool, from, to time.Time, res *Result) {
	subjects := map[int]bool{}
	wide := map[int]bool{}
	// Per subject, the observers that have it dead right now.
	deadAt := map[int]map[int]bool{}
	for _, e := range evs {
		if e.At.Before(from) || e.At.After(to) || !alive(e.Subject) {
			// Still track state for cluster-wide counting.
			if e.To != dead && deadAt[e.Subject] != nil {
				delete(deadAt[e.Subject], e.Observer)
			}
			continue
		}
		switch e.To {
		case dead:
			subjects[e.Subject] = true
			res.FalseAny++
			if e.Observer == 0 {
				res.False++
			}
			if deadAt[e.Subject] == nil {
				deadAt[e.Subject] = map[int]bool{}
			}
			deadAt[e.Subject][e.Observer] = true
			if observers > 1 && len(deadAt[e.Subject])*2 >= observers {
				wide[e.Subject] = true
			}
		case "suspect":
			res.Suspect++
		case "protected":
			res.Protected++
		default:
			if deadAt[e.Subject] != nil {
				delete(deadAt[e.Subject], e.Observer)
			}
		}
	}
	res.FalseMembers += len(subjects)
	res.ClusterWide += len(wide)
}

func runLoss(ctx context.Context, s Spec, cl cluster, res *Result, progress func(string, ...any)) error {
	from := time.Now()
	cl.setLoss(s.Loss)
	w := mark(cl)
	ps0, pl0, ds0, dl0 := cl.faultStats()
	step := min(s.Duration, 60*time.Second)
	for el := time.Duration(0); el < s.Duration; el += step {
		if !sleepCtx(ctx, min(step, s.Duration-el)) {
			return ctx.Err()
		}
		tmp := &Result{}
		falseVerdicts(cl.events(), cl.deadState(), cl.observers(), func(int) bool { return true }, from, time.Now(), tmp)
		progress("%s: %v of %v; false verdicts so far: %d (%d members)", s.Name(), min(el+step, s.Duration), s.Duration, tmp.False, tmp.FalseMembers)
	}
	w.into(cl, res)
	ps1, pl1, ds1, dl1 := cl.faultStats()
	res.PacketsSent, res.PacketsLost, res.DialsSent, res.DialsLost = ps1-ps0, pl1-pl0, ds1-ds0, dl1-dl0
	cl.setLoss(0)
	if !sleepCtx(ctx, s.Settle) {
		return ctx.Err()
	}
	falseVerdicts(cl.events(), cl.deadState(), cl.observers(), func(int) bool { return true }, from, time.Now(), res)
	return nil
}

func runIsolate(ctx context.Context, s Spec, cl cluster, res *Result, progress func(string, ...any)) error {
	if s.Trials < 1 || s.Trials >= s.N {
		return errors.New("detection: isolate needs 1 ≤ Trials < N")
	}
	dead := cl.deadState()
	for k := range s.Trials {
		// Member 0 is memberlist's observer; cut members 1, 2, … in turn
		// (pulse: the senders with relays of their own).
		m := k + 1
		if s.System == "pulse" {
			m = k
		}
		from := time.Now()
		cl.setCut(m, true)
		if !sleepCtx(ctx, s.Cut) {
			return ctx.Err()
		}
		cl.setCut(m, false)
		if !sleepCtx(ctx, s.Watch) {
			return ctx.Err()
		}
		to := time.Now()
		t := Trial{Member: m, AboutCutAt: -1, AboutOthAt: -1}
		evs := cl.events()
		deadBy := map[int]map[int]bool{}
		for _, e := range evs {
			if e.To == dead && e.At.Before(from) && !e.At.Before(from.Add(-20*time.Second)) {
				t.Before++
			}
			if e.At.Before(from) || e.At.After(to) {
				continue
			}
			if e.To != dead {
				if deadBy[e.Subject] != nil {
					delete(deadBy[e.Subject], e.Observer)
				}
				continue
			}
			at := e.At.Sub(from).Seconds()
			if deadBy[e.Subject] == nil {
				deadBy[e.Subject] = map[int]bool{}
			}
			deadBy[e.Subject][e.Observer] = true
			wide := cl.observers() > 1 && len(deadBy[e.Subject])*2 >= cl.observers()
			if e.Subject == m {
				t.AboutCut++
				if t.AboutCutAt < 0 {
					t.AboutCutAt = at
				}
				if wide {
					t.CutMemberDied = true
				}
				continue
			}
			t.AboutOthers++
			if t.AboutOthAt < 0 {
				t.AboutOthAt = at
			}
			if wide {
				t.OthersWide++
				deadBy[e.Subject] = map[int]bool{} // count each subject once per spread
			}
		}
		res.Trials = append(res.Trials, t)
		progress("%s: trial %d/%d (member %d cut %v): %d verdicts about it, %d about others", s.Name(), k+1, s.Trials, m, s.Cut, t.AboutCut, t.AboutOthers)
	}
	return nil
}
