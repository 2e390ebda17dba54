package probe

import (
	"context"
	"sync"
	"time"
)

// outcome is what one attempt reports to withFreshRetry.
type outcome interface {
	// ok: the attempt got an answer (whatever the verdict).
	ok() bool
	// staleFailure: it failed on a reused connection before any response
	// byte — the connection, not the target, may be dead.
	staleFailure() bool
	// discard drops the connection a stale failure happened on, so the
	// pool does not hand it out again.
	discard()
}

// withFreshRetry runs first on the pool. If first fails on a reused
// connection before any response byte, it retries once on a fresh
// connection at once. If first is on a reused connection that has not
// answered after staleAfter (suspect reports so), a fresh attempt starts in
// parallel and the first answer wins: a half-open pooled connection costs
// staleAfter, not the whole timeout (AP-07), and a slow but live target still
// answers on the pooled one.
//
// Every attempt started here has returned when withFreshRetry returns.
func withFreshRetry[T outcome](ctx context.Context, b *base, suspect func() bool,
	first, fresh func(context.Context) T) (res T, retried bool) {
	staleAfter := b.m.StaleAfter
	ctx1, cancel1 := context.WithCancel(ctx)
	defer cancel1()

	var (
		mu      sync.Mutex
		done    bool
		second  chan T
		cancel2 context.CancelFunc = func() {}
	)
	var timer *time.Timer
	if staleAfter > 0 {
		timer = time.AfterFunc(staleAfter, func() {
			mu.Lock()
			defer mu.Unlock()
			if done || second != nil || !suspect() {
				return
			}
			release, ok := b.tryFresh()
			if !ok {
				return // too many fresh attempts in flight: the network, not this connection, is suspect
			}
			ctx2, c2 := context.WithCancel(ctx)
			cancel2 = c2
			ch := make(chan T, 1)
			second = ch
			go func() {
				defer release()
				r := fresh(ctx2)
				if r.ok() {
					cancel1() // the fresh connection answered: stop waiting on the stale one
				}
				ch <- r
			}()
		})
	}

	r1 := first(ctx1)
	if timer != nil {
		timer.Stop()
	}
	mu.Lock()
	done = true
	ch, c2 := second, cancel2
	mu.Unlock()

	if ch == nil {
		if r1.ok() || !r1.staleFailure() || ctx.Err() != nil {
			return r1, false
		}
		release, ok := b.tryFresh()
		if !ok {
			return r1, false
		}
		defer release()
		r2 := fresh(ctx)
		if r2.ok() {
			r1.discard()
		}
		return r2, true
	}
	if r1.ok() {
		c2()
		<-ch
		return r1, true
	}
	r2 := <-ch
	c2()
	// Drop the pooled connection only when a fresh one answered while it
	// stayed silent: that is evidence against the connection. A target that
	// is merely slow (or a machine that is overloaded) keeps its pool.
	if r2.ok() && r1.staleFailure() {
		r1.discard()
	}
	return r2, true
}
