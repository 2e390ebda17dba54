package sim

import (
	"time"

	"github.com/fb4b1dcc/pulse/detector"
)

// JudgeTick is the period of the simulated judge's own timer; a pause is
// noticed by the first tick due during it, as the monitor's judge does.
const JudgeTick = 100 * time.Millisecond

// evaluate runs one detector over one trace the way the monitor's judge
// does and records QoS measurements. ledger is the detector's judge's
// ledger (fresh per trace); wall feeds the wall clock instead of the
// monotonic one (a deliberate bug, to show that clock-step bites).
func evaluate(d detector.Detector, tr *Trace, ledger *detector.PauseLedger, wall bool, rec *detector.QoSRecorder) {
	if len(tr.Arrivals) == 0 {
		return
	}
	at := func(a *Arrival) time.Duration {
		if wall {
			return a.Wall
		}
		return a.At
	}
	crash := tr.Crash
	first := at(&tr.Arrivals[0])
	if crash == NoCrash {
		// Observed up until its last arrival; nothing to detect.
		crash = at(&tr.Arrivals[len(tr.Arrivals)-1])
	}
	rec.Alive(max(crash-first, 0))

	const none = time.Duration(-1 << 62)
	start := none // start of the current suspicion
	end := func(t time.Duration) {
		if start < crash {
			rec.Mistake(min(t, crash) - start)
		}
		start = none
	}
	paused := false
	prev := first
	// Between events the deadline is fixed; a suspicion starts at the
	// deadline unless the judge is paused then (the resume evaluates).
	gap := func(t time.Duration) {
		if start != none || paused {
			return
		}
		if dl := d.Deadline(); dl < t {
			start = max(dl, prev)
		}
	}
	pi, ai := 0, 0
	pauses := tr.Pauses
	for ai < len(tr.Arrivals) || pi < 2*len(pauses) {
		// Next event: pause start (even pi), resume (odd pi), or arrival.
		var pt time.Duration = detector.Never
		if pi < 2*len(pauses) {
			if pi%2 == 0 {
				pt = pauses[pi/2].Start
			} else {
				pt = pauses[pi/2].End
			}
		}
		if ai < len(tr.Arrivals) && at(&tr.Arrivals[ai]) < pt {
			a := &tr.Arrivals[ai]
			t := at(a)
			gap(t)
			d.Observe(t, a.RTT)
			if start != none && !d.Suspect(t) {
				end(t)
			}
			prev = t
			ai++
			continue
		}
		gap(pt)
		if pi%2 == 0 {
			paused = true
		} else {
			paused = false
			p := pauses[pi/2]
			// The first judge tick due in the pause fires at its end.
			sched := (p.Start + JudgeTick - 1) / JudgeTick * JudgeTick
			if ledger != nil {
				ledger.Late(sched, p.End)
			}
			s := d.Suspect(pt)
			switch {
			case s && start == none:
				start = pt
			case !s && start != none:
				end(pt)
			}
		}
		prev = pt
		pi++
	}
	if tr.Crash == NoCrash {
		if start != none {
			end(crash)
		}
		return
	}
	if start == none {
		start = max(d.Deadline(), prev)
	}
	if start < crash {
		// Suspected while still up and never trusted again: a mistake
		// that the crash made right; detection time 0.
		rec.Mistake(crash - start)
		rec.Detection(0)
		return
	}
	rec.Detection(start - crash)
}
