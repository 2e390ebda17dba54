package a

import (
	"context"
	"sync/atomic"
	"time"
)

func sendHeartbeat() {}

// startHeartbeat is the seed's code for INC-2021-089: no exit, no Stop.
func startHeartbeat() {
	ticker := time.NewTicker(30 * time.Second) // want `time.NewTicker result is never stopped`
	for range ticker.C {                       // want `this ticker loop has no exit path`
		sendHeartbeat()
	}
}

// ignoresCancel sees ctx.Done() but does not leave the loop.
func ignoresCancel(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for { // want `this ticker loop has no exit path`
		select {
		case <-ctx.Done():
			println("cancelled")
		case <-t.C:
			sendHeartbeat()
		}
	}
}

func tickRange() {
	for range time.Tick(time.Second) { // want `this ticker loop has no exit path`
		sendHeartbeat()
	}
}

// breakLeavesSelect: a bare break inside a select leaves the select only.
func breakLeavesSelect(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for { // want `this ticker loop has no exit path`
		select {
		case <-stop:
			break
		case <-t.C:
		}
	}
}

// afterLoop: a time.After loop without an exit is just as unstoppable.
func afterLoop(beats <-chan int) {
	for { // want `this ticker loop has no exit path`
		select {
		case <-beats:
		case <-time.After(time.Second):
			println("missed beat")
		}
	}
}

func neverStoppable() <-chan time.Time {
	return time.NewTicker(time.Second).C // want `time.NewTicker\(...\).C can never be stopped`
}

func timerEarlyReturn(ch <-chan int) int {
	t := time.NewTimer(time.Second) // want `time.NewTimer result is never stopped`
	select {
	case v := <-ch:
		return v
	case <-t.C:
		return 0
	}
}

type beater struct {
	tick *time.Ticker
}

// newBeater stores the ticker in a field that nothing stops.
func newBeater() *beater {
	return &beater{tick: time.NewTicker(time.Second)} // want `time.NewTicker result is never stopped`
}

// --- must not be flagged ---

func correct(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sendHeartbeat()
		}
	}
}

func labeledBreak(done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
loop:
	for {
		select {
		case <-done:
			break loop
		case <-t.C:
		}
	}
}

func rangeWithReturn(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer func() { t.Stop() }()
	for range t.C {
		if ctx.Err() != nil {
			return
		}
	}
}

// Loop is owned by its caller, which defers Close; Close stops the ticker
// stored in the struct.
type Loop struct {
	ticker *time.Ticker
	done   chan struct{}
}

func NewLoop() *Loop {
	l := &Loop{done: make(chan struct{})}
	l.ticker = time.NewTicker(time.Second)
	return l
}

func (l *Loop) Close() { l.ticker.Stop() }

func owner() {
	l := NewLoop()
	defer l.Close()
}

func handOff(run func(*time.Ticker)) {
	t := time.NewTicker(time.Second)
	run(t)
}

func returned() *time.Ticker {
	t := time.NewTicker(time.Second)
	return t
}

// drainUntil leaves its loop only through the timer's case: the timer has
// always fired by then (go-msgpack's channel encoder has this shape).
func drainUntil(ch <-chan byte, d time.Duration) []byte {
	var bs []byte
	tt := time.NewTimer(d)
L1:
	for {
		select {
		case b := <-ch:
			bs = append(bs, b)
		case <-tt.C:
			break L1
		}
	}
	return bs
}

// drainOrClose can also leave when ch closes, with the timer pending.
func drainOrClose(ch <-chan byte, d time.Duration) []byte {
	var bs []byte
	tt := time.NewTimer(d) // want `time.NewTimer result is never stopped`
	for {
		select {
		case b, ok := <-ch:
			if !ok {
				return bs
			}
			bs = append(bs, b)
		case <-tt.C:
			return bs
		}
	}
}

// waitTimer receives outside a select: the timer has fired.
func waitTimer() {
	t := time.NewTimer(time.Millisecond)
	<-t.C
}

func condLoop(stopped *atomic.Bool) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for !stopped.Load() {
		<-t.C
	}
}

// notTimeDriven: an endless loop that never waits on time is not this
// analyzer's business.
func notTimeDriven(jobs <-chan func()) {
	for {
		(<-jobs)()
	}
}

// closureReturn: a return inside a closure does not leave the loop, but the
// loop's own return does.
func closureReturn(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for range t.C {
		f := func() bool { return true }
		if !f() || ctx.Err() != nil {
			return
		}
	}
}

func flushForever(flush func()) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	//pulselint:ignore tickerstop the process-wide metrics flusher runs until exit by design
	for range t.C {
		flush()
	}
}
