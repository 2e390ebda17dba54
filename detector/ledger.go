package detector

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// PauseLedger is the judge's record of its own pauses: the local-health
// guard (after Lifeguard's local health awareness) that keeps a stalled
// monitor from condemning every instance at once when it wakes up.
//
// The judge feeds it from its own timer: when a timer scheduled for instant
// S fires at now, it calls Late(S, now). Lateness above Tolerance means the
// judge (its process, VM or scheduler) was not running; the whole lateness
// is added to a monotonic cumulative total. Overlapping reports (several
// judge goroutines woken by the same stall) are credited once: only time
// after the latest credited instant counts.
//
// Detectors snapshot Total() at each arrival (8 bytes per instance) and
// measure silence as (now − last) − (Total() − totalAtLast): time the judge
// itself was paused is not counted against anyone. One ledger is shared by
// every detector of a process; readers use atomics, so Total may be called
// from any goroutine.
type PauseLedger struct {
	tolerance time.Duration
	settle    time.Duration

	mu      sync.Mutex    // serialises writers only
	covered time.Duration // end of the latest credited interval

	total      atomic.Int64 // cumulative credited pause, ns
	lastResume atomic.Int64 // instant the latest credited pause ended, ns
}

// DefaultPauseTolerance is how late a judge tick may be before the lateness
// counts as a pause: scheduling noise on a loaded 2-core host stays below it.
const DefaultPauseTolerance = 200 * time.Millisecond

// NewPauseLedger returns a ledger that ignores lateness up to tolerance
// (0 means DefaultPauseTolerance).
func NewPauseLedger(tolerance time.Duration) (*PauseLedger, error) {
	if tolerance < 0 {
		return nil, errors.New("detector: pause tolerance must be ≥ 0")
	}
	if tolerance == 0 {
		tolerance = DefaultPauseTolerance
	}
	l := &PauseLedger{tolerance: tolerance, settle: tolerance}
	l.lastResume.Store(-int64(Never))
	return l, nil
}

// Late records that the judge's timer scheduled for scheduled fired at now,
// and returns the pause credited by this report (0 if within tolerance or
// already credited).
func (l *PauseLedger) Late(scheduled, now time.Duration) time.Duration {
	if now-scheduled <= l.tolerance {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	from := max(scheduled, l.covered)
	if now <= from {
		return 0
	}
	credit := now - from
	l.covered = now
	l.total.Add(int64(credit))
	l.lastResume.Store(int64(now))
	return credit
}

// Total is the cumulative pause credited so far.
func (l *PauseLedger) Total() time.Duration {
	if l == nil {
		return 0
	}
	return time.Duration(l.total.Load())
}

// LastResume is the instant the latest credited pause ended, or a very
// early instant if there was none.
func (l *PauseLedger) LastResume() time.Duration {
	if l == nil {
		return -Never
	}
	return time.Duration(l.lastResume.Load())
}

// inShadow reports whether an arrival observed at now but sent at origin
// before the judge's last resume (or within the settle time after it, when
// its delay is unknown) was held up by the pause: its timing says nothing
// about the sender or the path.
func (l *PauseLedger) inShadow(now, origin time.Duration) bool {
	if l == nil {
		return false
	}
	r := time.Duration(l.lastResume.Load())
	return now >= r && origin < r+l.settle
}
