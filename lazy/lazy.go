package lazy

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fb4b1dcc/pulse/clock"
	"github.com/fb4b1dcc/pulse/internal/backoff"
)

// PanicError is returned to callers when the initialisation function
// panicked. It keeps the panic value and the stack of the panicking
// goroutine so the cause is not lost.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("lazy: initialisation panicked: %v", e.Value)
}

// Unwrap exposes the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}

// ErrClosed is returned by Get after Close.
var ErrClosed = errors.New("lazy: value closed")

// RetryError is returned while a failed attempt's back-off has not elapsed:
// the caller learns the last cause and when the next attempt may run,
// instead of a nil value or a new attempt hammering a sick dependency.
type RetryError struct {
	Err       error         // the last attempt's error
	Attempts  int           // failed attempts so far
	NextRetry time.Duration // time until the next attempt is allowed
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("lazy: %d attempt(s) failed, next retry in %s: %v", e.Attempts, e.NextRetry.Round(time.Millisecond), e.Err)
}

func (e *RetryError) Unwrap() error { return e.Err }

// Option configures a Value.
type Option func(*options)

type options struct {
	policy  backoff.Policy
	timeout time.Duration
	clk     clock.Clock
}

// WithBackoff sets the back-off between failed attempts (default: 100 ms
// doubling to 30 s, full jitter).
func WithBackoff(p backoff.Policy) Option { return func(o *options) { o.policy = p } }

// WithAttemptTimeout bounds one attempt (default 30 s). The attempt's
// context is cancelled when it passes, and the attempt counts as failed.
func WithAttemptTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithClock sets the clock used for back-off (tests).
func WithClock(c clock.Clock) Option { return func(o *options) { o.clk = c } }

// Value is a lazily initialised T. The zero Value is not usable; use New.
type Value[T any] struct {
	fn   func(context.Context) (T, error)
	opts options

	ok atomic.Pointer[T] // set once an attempt succeeded: the lock-free fast path

	mu        sync.Mutex
	inflight  *attempt[T]
	lastErr   error
	failures  int
	notBefore time.Time
	bo        *backoff.Backoff
	closed    bool
	cancel    context.CancelFunc // of the in-flight attempt
	wg        sync.WaitGroup     // in-flight attempt goroutine
}

type attempt[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// New returns a Value built by fn on first use. fn receives a context that is
// cancelled at the attempt timeout or on Close; it is detached from the
// cancellation of the caller that happened to trigger it, because its result
// is shared with every other waiting caller.
func New[T any](fn func(context.Context) (T, error), opts ...Option) *Value[T] {
	o := options{timeout: 30 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	o.clk = clock.OrReal(o.clk)
	return &Value[T]{fn: fn, opts: o, bo: backoff.New(o.policy)}
}

// Get returns the value, starting or joining an attempt if none has
// succeeded yet. It returns an error, never a zero value with a nil error,
// when the value is not available: the current attempt's error or panic, a
// *RetryError while back-off holds, ctx's error if the caller stops waiting,
// or ErrClosed.
func (v *Value[T]) Get(ctx context.Context) (T, error) {
	if p := v.ok.Load(); p != nil {
		return *p, nil
	}
	var zero T
	v.mu.Lock()
	if p := v.ok.Load(); p != nil {
		v.mu.Unlock()
		return *p, nil
	}
	if v.closed {
		v.mu.Unlock()
		return zero, ErrClosed
	}
	a := v.inflight
	if a == nil {
		now := v.opts.clk.Now()
		if v.lastErr != nil && now.Before(v.notBefore) {
			err := &RetryError{Err: v.lastErr, Attempts: v.failures, NextRetry: v.notBefore.Sub(now)}
			v.mu.Unlock()
			return zero, err
		}
		a = v.start(ctx)
	}
	v.mu.Unlock()

	select {
	case <-a.done:
		if a.err != nil {
			return zero, a.err
		}
		return a.val, nil
	case <-ctx.Done():
		return zero, fmt.Errorf("lazy: gave up waiting for initialisation: %w", ctx.Err())
	}
}

// start launches one attempt; v.mu is held.
func (v *Value[T]) start(caller context.Context) *attempt[T] {
	a := &attempt[T]{done: make(chan struct{})}
	actx, cancel := context.WithTimeout(context.WithoutCancel(caller), v.opts.timeout)
	v.inflight, v.cancel = a, cancel
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		defer cancel()
		val, err := v.call(actx)
		v.finish(a, val, err)
	}()
	return a
}

// call runs fn, converting a panic into a *PanicError and a nil error with a
// context failure into that failure.
func (v *Value[T]) call(ctx context.Context) (val T, err error) {
	defer func() {
		if r := recover(); r != nil {
			var zero T
			val, err = zero, &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	val, err = v.fn(ctx)
	if err == nil && ctx.Err() != nil {
		// The attempt overran its timeout: whatever it returned was built
		// against a context that is already gone.
		err = fmt.Errorf("lazy: attempt exceeded %s: %w", v.opts.timeout, ctx.Err())
	}
	return val, err
}

func (v *Value[T]) finish(a *attempt[T], val T, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	a.val, a.err = val, err
	v.inflight, v.cancel = nil, nil
	if err == nil {
		v.ok.Store(&a.val)
		v.lastErr, v.failures = nil, 0
		v.bo.Reset()
	} else {
		v.lastErr = err
		v.failures++
		v.notBefore = v.opts.clk.Now().Add(v.bo.Next())
	}
	close(a.done)
}

// Invalidate forgets a successfully built value (for example after the
// client it holds has been found broken), so the next Get builds a new one.
// It does not close the old value; that is the caller's job.
func (v *Value[T]) Invalidate() {
	v.mu.Lock()
	v.ok.Store(nil)
	v.mu.Unlock()
}

// Close cancels an in-flight attempt, waits for it to return and makes later
// Gets fail with ErrClosed. It is idempotent.
func (v *Value[T]) Close() {
	v.mu.Lock()
	v.closed = true
	v.ok.Store(nil)
	if v.cancel != nil {
		v.cancel()
	}
	v.mu.Unlock()
	v.wg.Wait()
}
