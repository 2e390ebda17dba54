package clocktest

import (
	"container/heap"
	"sync"
	"time"

	"github.com/fb4b1dcc/pulse/clock"
)

// Fake is a clock.Clock that moves only when told to. It is safe for
// concurrent use. Timer channels have a buffer of one, as the runtime's
// timers do, and a fire on a full channel is dropped rather than blocking the
// test that advances time.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers timerHeap
	seq    uint64
}

var _ clock.Clock = (*Fake)(nil)

// NewFake returns a Fake whose time starts at start (a zero start becomes a
// fixed, arbitrary instant so that tests are reproducible).
func NewFake(start time.Time) *Fake {
	if start.IsZero() {
		start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return &Fake{now: start}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Since is Now().Sub(t).
func (f *Fake) Since(t time.Time) time.Duration { return f.Now().Sub(t) }

// Advance moves time forward by d, firing every timer whose deadline is
// reached, in deadline order, with the clock set to each deadline as it fires.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	target := f.now.Add(d)
	f.mu.Unlock()
	f.Set(target)
}

// Set moves time to t (never backwards) and fires timers as Advance does.
func (f *Fake) Set(t time.Time) {
	for {
		f.mu.Lock()
		if len(f.timers) == 0 || f.timers[0].when.After(t) {
			if t.After(f.now) {
				f.now = t
			}
			f.mu.Unlock()
			return
		}
		ft := heap.Pop(&f.timers).(*fakeTimer)
		ft.index = -1
		if ft.when.After(f.now) {
			f.now = ft.when
		}
		now := f.now
		if ft.period > 0 {
			ft.when = ft.when.Add(ft.period)
			heap.Push(&f.timers, ft)
		}
		f.mu.Unlock()
		select {
		case ft.ch <- now:
		default:
		}
	}
}

// Pending returns the number of active timers and tickers; tests use it to
// check that loops stop what they start.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// NextDeadline returns the earliest active deadline, if any.
func (f *Fake) NextDeadline() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.timers) == 0 {
		return time.Time{}, false
	}
	return f.timers[0].when, true
}

// NewTimer returns a timer that fires when the fake time reaches Now()+d.
func (f *Fake) NewTimer(d time.Duration) clock.Timer {
	t := &fakeTimer{f: f, ch: make(chan time.Time, 1), index: -1}
	t.Reset(d)
	return t
}

// NewTicker returns a ticker firing every d of fake time.
func (f *Fake) NewTicker(d time.Duration) clock.Ticker {
	if d <= 0 {
		panic("clocktest: non-positive ticker period")
	}
	t := &fakeTimer{f: f, ch: make(chan time.Time, 1), index: -1}
	t.resetPeriod(d, d)
	return fakeTicker{t}
}

type fakeTimer struct {
	f      *Fake
	ch     chan time.Time
	when   time.Time
	period time.Duration
	index  int
	seq    uint64
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&t.f.timers, t.index)
	t.index = -1
	return true
}

func (t *fakeTimer) Reset(d time.Duration) bool { return t.resetPeriod(d, 0) }

func (t *fakeTimer) resetPeriod(d, period time.Duration) bool {
	f := t.f
	f.mu.Lock()
	active := t.index >= 0
	if active {
		heap.Remove(&f.timers, t.index)
	}
	// Drain a stale fire, as Go 1.23+ timers do on Reset.
	select {
	case <-t.ch:
	default:
	}
	t.when = f.now.Add(d)
	t.period = period
	f.seq++
	t.seq = f.seq
	heap.Push(&f.timers, t)
	f.mu.Unlock()
	if d <= 0 {
		f.Set(f.Now())
	}
	return active
}

type fakeTicker struct{ t *fakeTimer }

func (k fakeTicker) C() <-chan time.Time   { return k.t.ch }
func (k fakeTicker) Stop()                 { k.t.Stop() }
func (k fakeTicker) Reset(d time.Duration) { k.t.resetPeriod(d, d) }

type timerHeap []*fakeTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].when.Equal(h[j].when) {
		return h[i].seq < h[j].seq
	}
	return h[i].when.Before(h[j].when)
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *timerHeap) Push(x any) {
	t := x.(*fakeTimer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return t
}
