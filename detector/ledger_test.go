package detector

import (
	"sync"
	"testing"
	"time"
)

func TestPauseLedger(t *testing.T) {
	l, err := NewPauseLedger(200 * ms)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Late(s, s+150*ms); got != 0 || l.Total() != 0 {
		t.Fatalf("lateness within tolerance credited %v", got)
	}
	// The tick due at 10.1 s fired at 15.1 s: a 5 s pause.
	if got := l.Late(10100*ms, 15100*ms); got != 5*s {
		t.Fatalf("credit %v, want 5s", got)
	}
	// A second judge goroutine woken by the same stall: credited once
	// (only time after the latest credited instant counts).
	if got := l.Late(10*s, 15100*ms); got != 0 {
		t.Fatalf("overlapping report credited %v, want 0", got)
	}
	// A later stall overlapping the end of the first: only the new part.
	if got := l.Late(15*s, 16*s); got != 900*ms {
		t.Fatalf("partly overlapping report credited %v, want 900ms", got)
	}
	if l.Total() != 5900*ms || l.LastResume() != 16*s {
		t.Fatalf("total %v last resume %v", l.Total(), l.LastResume())
	}
	if _, err := NewPauseLedger(-1); err == nil {
		t.Fatal("negative tolerance accepted")
	}
	var nilL *PauseLedger
	if nilL.Total() != 0 {
		t.Fatal("a nil ledger reads as no pause")
	}
}

func TestPauseLedgerConcurrent(t *testing.T) {
	l, _ := NewPauseLedger(0)
	var wg sync.WaitGroup
	// Eight judge shards all notice the same 3 s stall, while readers
	// poll the total.
	for range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			l.Late(20*s, 23*s)
		}()
		go func() {
			defer wg.Done()
			for range 100 {
				if tot := l.Total(); tot != 0 && tot != 3*s {
					t.Errorf("torn total %v", tot)
					return
				}
			}
		}()
	}
	wg.Wait()
	if l.Total() != 3*s {
		t.Fatalf("total %v after one stall reported 8 times, want 3s", l.Total())
	}
}

// The local-pause guard, through the API the monitor uses: the judge's
// late tick feeds the ledger, the instance's deadline moves by the pause,
// and beats that queued during the pause teach the estimator nothing.
func TestAdaptiveJudgePause(t *testing.T) {
	l, _ := NewPauseLedger(0)
	p := mustAdaptive(t, DefaultAdaptiveConfig(s), l)
	var guarded Adaptive
	unguarded := mustAdaptive(t, DefaultAdaptiveConfig(s), nil)
	var plain Adaptive
	now := time.Duration(0)
	for range 600 {
		now += s
		guarded.Observe(p, now, 20*ms)
		plain.Observe(unguarded, now, 20*ms)
	}
	est := guarded.Estimate()
	// The judge stalls from now+0.5 s to now+5.5 s; its tick due at
	// now+0.6 s fires at now+5.5 s.
	resume := now + 5500*ms
	before := guarded.Deadline(p)
	l.Late(now+600*ms, resume)
	if got := guarded.Deadline(p) - before; got != 4900*ms {
		t.Fatalf("deadline moved by %v, want the credited 4.9s", got)
	}
	if guarded.Suspect(p, resume) {
		t.Fatal("guarded detector condemns the instance for the judge's own pause")
	}
	if !plain.Suspect(unguarded, resume) {
		t.Fatal("control: without the ledger the same silence is a suspicion")
	}
	// Five beats queued during the pause are read at resume, 1 ms apart,
	// their measured delay inflated by the queueing.
	for i := 1; i <= 5; i++ {
		sent := now + time.Duration(i)*s
		at := resume + time.Duration(i)*ms
		guarded.Observe(p, at, at-sent)
	}
	if got := guarded.Estimate(); got != est {
		t.Fatalf("queued beats were learned from: %+v → %+v", est, got)
	}
	// The next ordinary beat is learned from again.
	guarded.Observe(p, now+6*s+20*ms, 20*ms)
	if guarded.Estimate() == est {
		t.Fatal("ordinary beat after the pause was not learned from")
	}
}
