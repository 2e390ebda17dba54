package health

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fb4b1dcc/pulse/clock"
	"github.com/fb4b1dcc/pulse/status"
)

// Options configures a Health.
type Options struct {
	// DrainDelay is how long Shutdown keeps the process running, not ready,
	// before it stops the checks, so load balancers and Kubernetes endpoints
	// notice the 503 and stop sending traffic first (default 0: callers that
	// serve traffic should set it to at least their probe period).
	DrainDelay time.Duration
	// DegradedIsReady keeps a degraded instance ready (default: a degraded
	// check takes the instance out of traffic but never fails liveness).
	DegradedIsReady bool
	// StopTimeout bounds how long Run waits, after its context ends, for
	// check runs that ignore their context (default 5s). Runs still going
	// then are reported in Run's error.
	StopTimeout time.Duration
	// Clock drives check schedules (default: the real clock).
	Clock clock.Clock
	// OnResult, when set, is called after every completed or abandoned run
	// (from the check's goroutine; keep it fast). Metrics and logs hook here.
	OnResult func(check string, r status.Result)
}

// Health owns a set of checks and the snapshot published from them.
type Health struct {
	opts Options
	clk  clock.Clock
	snap atomic.Pointer[Snapshot]

	mu       sync.Mutex
	states   []CheckState // sorted by name; the source of every snapshot
	checks   []Check      // parallel to states
	seq      uint64
	draining bool
	watchers map[chan *Snapshot]struct{}
	running  bool
	stopRun  context.CancelFunc // cancels the check loops of Run
	runDone  chan struct{}      // closed when Run returns

	runs sync.WaitGroup // check run goroutines, including abandoned ones

	// Precomputed answers for the hot path.
	okBody  []byte
	ctPlain []string
	ctJSON  []string
	noSniff []string
	noStore []string
}

// New validates the checks and returns a Health. It starts nothing; call Run.
func New(opts Options, checks ...Check) (*Health, error) {
	if opts.DrainDelay < 0 || opts.StopTimeout < 0 {
		return nil, errors.New("health: negative DrainDelay or StopTimeout")
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 5 * time.Second
	}
	h := &Health{
		opts:     opts,
		clk:      clock.OrReal(opts.Clock),
		watchers: map[chan *Snapshot]struct{}{},
		okBody:   []byte("ok"),
		ctPlain:  []string{"text/plain; charset=utf-8"},
		ctJSON:   []string{"application/json"},
		noSniff:  []string{"nosniff"},
		noStore:  []string{"no-store"},
	}
	var errs []error
	for _, c := range checks {
		if err := h.add(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	h.publishLocked()
	return h, nil
}

// Add registers another check. Checks can be added until Run starts.
func (h *Health) Add(c Check) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.running {
		return fmt.Errorf("health: cannot add check %q after Run started", c.Name)
	}
	if err := h.add(c); err != nil {
		return err
	}
	h.publishLocked()
	return nil
}

func (h *Health) add(c Check) error {
	if err := c.normalise(); err != nil {
		return err
	}
	i, found := slices.BinarySearchFunc(h.states, c.Name, func(s CheckState, n string) int {
		return compareStrings(s.Name, n)
	})
	if found {
		return fmt.Errorf("health: duplicate check %q", c.Name)
	}
	c.Groups = slices.Clone(c.Groups)
	sort.Strings(c.Groups)
	h.states = slices.Insert(h.states, i, CheckState{Name: c.Name, AffectsLiveness: c.AffectsLiveness, Groups: c.Groups})
	h.checks = slices.Insert(h.checks, i, c)
	return nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Snapshot returns the current state. It never blocks.
func (h *Health) Snapshot() *Snapshot { return h.snap.Load() }

// Set records the result of a manual check (one registered without Func):
// nil for healthy, an error for unhealthy, Degraded(err) for degraded.
func (h *Health) Set(name string, err error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := h.index(name)
	if i < 0 {
		return fmt.Errorf("health: no check named %q", name)
	}
	if h.checks[i].Func != nil {
		return fmt.Errorf("health: check %q runs by itself; Set is for manual checks", name)
	}
	h.recordLocked(i, err, 0, false)
	return nil
}

func (h *Health) index(name string) int {
	i, found := slices.BinarySearchFunc(h.states, name, func(s CheckState, n string) int {
		return compareStrings(s.Name, n)
	})
	if !found {
		return -1
	}
	return i
}

// Subscribe returns a channel that receives the newest snapshot whenever it
// changes (the current one is already in it). The channel has a buffer of
// one and an unread snapshot is replaced by a newer one, so a slow reader
// sees the latest state and never blocks the owner. Call cancel to stop.
func (h *Health) Subscribe() (<-chan *Snapshot, func()) {
	ch := make(chan *Snapshot, 1)
	h.mu.Lock()
	ch <- h.snap.Load()
	h.watchers[ch] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.watchers, ch)
			h.mu.Unlock()
		})
	}
}

// publishLocked builds and stores a new snapshot and offers it to watchers.
func (h *Health) publishLocked() {
	h.seq++
	s := build(h.seq, slices.Clone(h.states), h.draining, h.opts.DegradedIsReady)
	if !s.Live {
		s.liveBody = endpoint{h, false}.text(s, nil, false)
	}
	if !s.Ready {
		s.readyBody = endpoint{h, true}.text(s, nil, false)
	}
	h.snap.Store(s)
	for ch := range h.watchers {
		// Newest wins: drop an unread snapshot instead of blocking. Only
		// this goroutine (holding mu) sends, so after the drain there is room.
		select {
		case ch <- s:
		default:
			select {
			case <-ch:
			default:
			}
			ch <- s
		}
	}
}

// recordLocked stores one run's outcome.
func (h *Health) recordLocked(i int, err error, latency time.Duration, timedOut bool) {
	st := &h.states[i]
	st.Status = statusOf(err)
	st.Err = ""
	if err != nil {
		st.Err = err.Error()
	}
	if st.Status == status.Healthy || (st.Status == status.Degraded) {
		st.everOK = true
	}
	st.Latency = latency
	st.At = h.clk.Now()
	st.Runs++
	if timedOut {
		st.Timeouts++
	}
	var pe *panicError
	if errors.As(err, &pe) {
		st.Panics++
	}
	h.publishLocked()
}

type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("check panicked: %v", e.value) }

// Run runs every check in the background until ctx ends or Shutdown
// finishes draining. It returns after all check loops have exited and every
// run has returned, or StopTimeout after that if some run ignores its
// context (those are named in the error). Run may be called once.
func (h *Health) Run(ctx context.Context) error {
	h.mu.Lock()
	if h.running || h.runDone != nil {
		h.mu.Unlock()
		return errors.New("health: Run called twice")
	}
	h.running = true
	ctx, cancel := context.WithCancel(ctx)
	h.stopRun = cancel
	h.runDone = make(chan struct{})
	checks := slices.Clone(h.checks)
	h.mu.Unlock()
	defer close(h.runDone)
	defer cancel()

	var loops sync.WaitGroup
	for i, c := range checks {
		if c.Func == nil {
			continue
		}
		loops.Add(1)
		go func() {
			defer loops.Done()
			h.loop(ctx, i, c)
		}()
	}
	<-ctx.Done()
	loops.Wait()
	return h.waitRuns()
}

// waitRuns waits for in-flight runs up to StopTimeout.
func (h *Health) waitRuns() error {
	done := make(chan struct{})
	go func() { h.runs.Wait(); close(done) }()
	t := h.clk.NewTimer(h.opts.StopTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C():
	}
	h.mu.Lock()
	var names []string
	for _, s := range h.states {
		if s.InFlight {
			names = append(names, s.Name)
		}
	}
	h.mu.Unlock()
	// The waiter goroutine above exits when the stuck runs finally return.
	return fmt.Errorf("health: checks %v ignored cancellation and are still running after %s", names, h.opts.StopTimeout)
}

// loop schedules one check: a run, then Interval, then the next run. One
// timer is reused for the life of the loop (AP-03).
func (h *Health) loop(ctx context.Context, i int, c Check) {
	t := h.clk.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		h.runOnce(ctx, i, c)
		t.Reset(c.Interval)
	}
}

// runOnce starts a run unless an abandoned one is still in flight, and
// waits for it up to the check's timeout.
func (h *Health) runOnce(ctx context.Context, i int, c Check) {
	h.mu.Lock()
	st := &h.states[i]
	if st.InFlight {
		// Never stack runs on a hung dependency: the abandoned run still
		// holds whatever it was waiting for.
		st.Skipped++
		h.publishLocked()
		h.mu.Unlock()
		return
	}
	st.InFlight = true
	h.mu.Unlock()

	rctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	done := make(chan error, 1)
	start := h.clk.Now()
	h.runs.Add(1)
	go func() {
		defer h.runs.Done()
		err := call(rctx, c.Func)
		h.mu.Lock()
		h.states[i].InFlight = false
		h.mu.Unlock()
		done <- err
	}()

	var (
		err      error
		timedOut bool
	)
	select {
	case err = <-done:
		if err != nil && rctx.Err() == context.DeadlineExceeded {
			timedOut = true
		}
	case <-rctx.Done():
		if ctx.Err() != nil {
			return // shutting down: no verdict from a cancelled run
		}
		err = status.Errorf(status.ClassTimeout, "check %s timed out after %s", c.Name, c.Timeout)
		timedOut = true
	}
	latency := h.clk.Since(start)
	h.mu.Lock()
	h.recordLocked(i, err, latency, timedOut)
	h.mu.Unlock()
	if h.opts.OnResult != nil {
		r := status.Result{Status: statusOf(err), Latency: latency, Err: err, Class: status.Classify(err)}
		if err != nil {
			r.Reason = err.Error()
		}
		h.opts.OnResult(c.Name, r)
	}
}

// call runs f and turns a panic into an error.
func call(ctx context.Context, f func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = status.WithClass(status.ClassInternal, &panicError{value: r, stack: debug.Stack()})
		}
	}()
	return f(ctx)
}

// Shutdown starts draining: readiness turns false at once (and every gRPC
// service NOT_SERVING), then after DrainDelay (or when ctx ends, whichever
// is first) the checks stop and Shutdown waits for Run to return.
func (h *Health) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if !h.draining {
		h.draining = true
		h.publishLocked()
	}
	stop, done := h.stopRun, h.runDone
	h.mu.Unlock()

	if h.opts.DrainDelay > 0 {
		t := h.clk.NewTimer(h.opts.DrainDelay)
		select {
		case <-t.C():
		case <-ctx.Done():
		}
		t.Stop()
	}
	if stop == nil {
		return nil // Run never started
	}
	stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("health: shutdown: %w", ctx.Err())
	}
}
