package a

import (
	"context"
	"time"
)

// watch is the seed's INC-2023-1152 shape: a heartbeat watchdog that waits
// for the next beat with a fresh time.After each time round the loop.
func watch(beats <-chan struct{}, dead func()) {
	for {
		select {
		case <-beats:
		case <-time.After(30 * time.Second): // want `time.After in a loop leaks a timer whenever another case wins: below Go 1.23 \(module go 1.21\)`
			dead()
		}
	}
}

// poll abandons a timer on every iteration through its default clause.
func poll(work func() bool) {
	for work() {
		select {
		case <-time.After(time.Second): // want `time.After in a loop leaks a timer`
		default:
		}
	}
}

// wakeUp polls every few seconds or when notified (etcd's version monitor
// shape): a wake-up, not a timeout.
func wakeUp(notify, stop <-chan struct{}, work func()) {
	for {
		select {
		case <-notify:
		case <-time.After(4 * time.Second):
		case <-stop:
			return
		}
		work()
	}
}

// viaVar assigns the channel first; the loop still makes one per beat.
func viaVar(beats <-chan int) {
	for {
		timeout := time.After(time.Second) // want `time.After in a loop leaks a timer`
		select {
		case <-beats:
		case <-timeout:
			return
		}
	}
}

// resetPerBeat re-arms a watchdog with time.After on every beat (etcd's
// lease proxy has this shape): each beat abandons the previous timer.
func resetPerBeat(beats <-chan int, expired func()) {
	var watchdog <-chan time.Time
	for {
		select {
		case <-watchdog:
			expired()
			return
		case <-beats:
			watchdog = time.After(3 * time.Second) // want `time.After in a loop leaks a timer`
		}
	}
}

// overRange: a range body runs once per element.
func overRange(items []int, ack <-chan int) {
	for range items {
		select {
		case v := <-ack:
			_ = v
		case <-time.After(time.Second): // want `time.After in a loop leaks a timer`
			println("no ack")
		}
	}
}

// tickPerIteration starts a ticker each time round and never stops any.
func tickPerIteration(send func()) {
	for i := 0; i < 10; i++ {
		<-time.Tick(time.Second) // want `time.Tick in a loop leaks a ticker every iteration`
		send()
	}
}

// --- must not be flagged ---

// once: outside any loop the timer is created once per call.
func once(ch <-chan int) bool {
	select {
	case <-ch:
		return true
	case <-time.After(time.Second):
		return false
	}
}

// retry: the only other case returns, so no timer is abandoned while the
// loop goes on.
func retry(ctx context.Context, try func() error) error {
	for i := 0; i < 3; i++ {
		if try() == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(i) * time.Second):
		}
	}
	return nil
}

// retryNoReturn: the ctx.Done() case does not return, but a closed done
// channel wins at most once before the loop condition notices.
func retryNoReturn(ctx context.Context, try func() error) error {
	err := try()
	for i := 0; err != nil && ctx.Err() == nil && i < 5; i++ {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		err = try()
	}
	return err
}

// stopChannel: same for a channel named as a shutdown signal.
func stopChannel(stop <-chan struct{}, stopped func() bool, work func()) {
	for !stopped() {
		select {
		case <-stop:
		case <-time.After(time.Second):
			work()
		}
	}
}

// labeled: the stop case leaves the loop through a labeled break.
func labeled(stop <-chan struct{}, work func()) {
loop:
	for {
		select {
		case <-stop:
			break loop
		case <-time.After(time.Second):
			work()
		}
	}
}

// sleepLike: a bare receive always waits for the timer to fire.
func sleepLike() {
	for i := 0; i < 3; i++ {
		<-time.After(10 * time.Millisecond)
	}
}

// overall: one deadline for the whole loop, created before it.
func overall(ch <-chan int) int {
	n := 0
	deadline := time.After(5 * time.Second)
	for {
		select {
		case <-ch:
			n++
		case <-deadline:
			return n
		}
	}
}

// rangeTick: the range operand is evaluated once.
func rangeTick(ctx context.Context, beat func()) {
	for range time.Tick(time.Second) {
		if ctx.Err() != nil {
			return
		}
		beat()
	}
}

// timerReset is the correct pattern: one timer, stopped, reset per beat.
func timerReset(ctx context.Context, beats <-chan struct{}, dead func()) {
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beats:
			t.Reset(30 * time.Second)
		case <-t.C:
			dead()
		}
	}
}

// inGoroutine: the closure's own body has no loop.
func inGoroutine(chs []chan int) {
	for _, ch := range chs {
		go func() {
			select {
			case <-ch:
			case <-time.After(time.Second):
			}
		}()
	}
}

// --- directives ---

func ignored(beats <-chan struct{}) {
	for {
		select {
		case <-beats:
		//pulselint:ignore timeafter the sender beats at most once a minute, so at most one timer is pending
		case <-time.After(time.Minute):
			println("beat late")
		}
	}
}

func noReason(beats <-chan struct{}) {
	for {
		select {
		case <-beats:
		/* want `pulselint:ignore timeafter needs a reason` */ //pulselint:ignore timeafter
		case <-time.After(time.Minute):                        // want `time.After in a loop leaks a timer`
			println("beat late")
		}
	}
}

func otherAnalyzer(beats <-chan struct{}) {
	for {
		select {
		case <-beats:
		//pulselint:ignore tickerstop a directive for another analyzer silences nothing here
		case <-time.After(time.Minute): // want `time.After in a loop leaks a timer`
			println("beat late")
		}
	}
}

//pulselint:ignore timeafter nothing to silence here // want `unused pulselint:ignore for timeafter`
func stale() {}
