package monitor

import (
	"container/heap"
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fb4b1dcc/pulse/probe"
	"github.com/fb4b1dcc/pulse/status"
)

// scheduler runs active probes: every (instance, module) pair is a task
// with its own phase inside the interval (a hash of target and module, so
// a thousand targets do not fire in the same millisecond), at most one
// probe in flight per task, a bound on probes in flight overall, and a
// schedule kept on the monotonic clock from the planned instants, so a
// slow probe never delays the others and never drifts its own task.
type scheduler struct {
	m       *Monitor
	mu      sync.Mutex
	tasks   map[taskKey]*task
	queue   taskHeap
	probers map[proberKey]*proberEntry
	retired []retiredProber
	changed chan struct{}
	sem     chan struct{}
	wg      sync.WaitGroup

	skippedBusy     atomic.Uint64 // a task's previous probe was still running
	skippedOverload atomic.Uint64 // the concurrency bound was reached
	launched        atomic.Uint64
}

type taskKey struct {
	in  *instance
	idx int
}

type proberKey struct{ service, module string }

type retiredProber struct {
	p  probe.Prober
	at time.Duration
}

type proberEntry struct {
	module probe.Module
	p      probe.Prober
}

type task struct {
	key      taskKey
	target   string
	interval time.Duration
	timeout  time.Duration
	prober   probe.Prober
	next     time.Duration
	inFlight bool
	removed  bool
	index    int
}

func newScheduler(m *Monitor) *scheduler {
	return &scheduler{
		m: m, tasks: map[taskKey]*task{}, probers: map[proberKey]*proberEntry{},
		changed: make(chan struct{}, 1), sem: make(chan struct{}, m.opts.MaxConcurrentProbes),
	}
}

func (s *scheduler) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// instanceAdded and instanceRemoved are called with the monitor's lock
// held; they only signal, the scheduler re-reads under its own turn.
func (s *scheduler) instanceAdded(in *instance) {
	if len(in.svc.cfg.spec.Active) > 0 {
		s.poke()
	}
}

func (s *scheduler) instanceRemoved(in *instance) {
	if len(in.active) > 0 {
		s.poke()
	}
}

// SchedulerStats are counters of the probe scheduler.
type SchedulerStats struct {
	Tasks           int
	Launched        uint64
	SkippedBusy     uint64
	SkippedOverload uint64
}

// SchedulerStats returns the probe scheduler's counters.
func (m *Monitor) SchedulerStats() SchedulerStats {
	s := m.sched
	s.mu.Lock()
	n := len(s.tasks)
	s.mu.Unlock()
	return SchedulerStats{Tasks: n, Launched: s.launched.Load(), SkippedBusy: s.skippedBusy.Load(), SkippedOverload: s.skippedOverload.Load()}
}

func (s *scheduler) run(ctx context.Context) {
	defer s.wg.Wait()
	t := s.m.clk.NewTimer(time.Hour)
	defer t.Stop()
	s.sync()
	for {
		s.mu.Lock()
		wait := time.Hour
		var planned time.Duration
		if len(s.queue) > 0 {
			planned = s.queue[0].next
			wait = max(planned-s.m.now(), 0)
		}
		s.mu.Unlock()
		t.Reset(wait)
		fired := false
		select {
		case <-ctx.Done():
			return
		case <-s.m.specCh:
			s.sync()
		case <-s.changed:
			s.sync()
		case <-t.C():
			fired = true
		}
		now := s.m.now()
		if fired && planned > 0 {
			s.m.ledger.Late(planned, now)
		}
		s.launchDue(ctx, now)
	}
}

// launchDue starts every task whose time has come.
func (s *scheduler) launchDue(ctx context.Context, now time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeRetiredLocked(now)
	for len(s.queue) > 0 && s.queue[0].next <= now {
		t := heap.Pop(&s.queue).(*task)
		planned := t.next
		// The next run is planned from this one's plan, not from when it
		// ends: no drift. After a stall, skip missed runs instead of
		// firing them in a burst.
		t.next = planned + t.interval
		if t.next <= now {
			t.next = now + t.interval
		}
		heap.Push(&s.queue, t)
		if t.inFlight {
			s.skippedBusy.Add(1)
			continue
		}
		select {
		case s.sem <- struct{}{}:
		default:
			s.skippedOverload.Add(1)
			continue
		}
		t.inFlight = true
		s.launched.Add(1)
		s.wg.Add(1)
		go s.probe(ctx, t, t.prober, t.target, t.timeout)
	}
}

// probe runs one probe and hands its result to the verdict engine.
// It gets the task's settings as values: sync may change the task while
// the probe runs.
func (s *scheduler) probe(ctx context.Context, t *task, p probe.Prober, target string, timeout time.Duration) {
	defer s.wg.Done()
	defer func() { <-s.sem }()
	var r probe.Result
	func() {
		defer func() {
			if p := recover(); p != nil {
				r = probe.Result{Target: target}
				r.Status, r.Class = status.Unhealthy, status.ClassInternal
				r.Err = fmt.Errorf("probe panicked: %v\n%s", p, debug.Stack())
				r.Reason = fmt.Sprintf("probe panicked: %v", p)
			}
		}()
		pctx, cancel := context.WithTimeout(ctx, timeout+timeout/10+50*time.Millisecond)
		defer cancel()
		r = p.Probe(pctx, target)
	}()
	if ctx.Err() != nil {
		s.mu.Lock()
		t.inFlight = false
		s.mu.Unlock()
		return // shutting down: a cancelled probe is no evidence
	}
	now := s.m.now()
	s.m.mu.Lock()
	retryIn := s.m.observeProbeLocked(t.key.in, t.key.idx, &r, now)
	s.m.unlock()
	s.mu.Lock()
	t.inFlight = false
	if retryIn > 0 && !t.removed && t.index >= 0 {
		if at := now + retryIn; at < t.next {
			t.next = at
			heap.Fix(&s.queue, t.index)
		}
	}
	s.mu.Unlock()
	if retryIn > 0 {
		s.poke()
	}
}

// phase spreads tasks over the interval by a hash of target and module.
func phase(target, module string, interval time.Duration) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(target))
	h.Write([]byte{0})
	h.Write([]byte(module))
	return time.Duration(h.Sum64() % uint64(interval))
}

// sync reconciles tasks with the monitor's instances and probers with the
// spec's modules. Probers of unchanged modules are kept, with their pooled
// connections.
func (s *scheduler) sync() {
	type want struct {
		key      taskKey
		target   string
		service  string
		module   string
		mod      probe.Module
		interval time.Duration
		timeout  time.Duration
	}
	var wants []want
	s.m.mu.Lock()
	for _, svc := range s.m.order {
		if svc.cfg == nil {
			continue
		}
		for _, in := range svc.byName {
			if in.static == nil || in.static.target == "" || in.foreign {
				continue
			}
			for i, a := range svc.cfg.spec.Active {
				mod := a.Module
				mod.Interval, mod.Timeout = a.Interval, a.Timeout
				wants = append(wants, want{key: taskKey{in, i}, target: in.static.target, service: svc.name,
					module: a.Name, mod: mod, interval: a.Interval, timeout: a.Timeout})
			}
		}
	}
	s.m.mu.Unlock()

	// Build probers outside every lock: it compiles conditions.
	needed := map[proberKey]bool{}
	for _, w := range wants {
		k := proberKey{w.service, w.module}
		needed[k] = true
		if e := s.probers[k]; e != nil && reflect.DeepEqual(e.module, w.mod) {
			continue
		}
		p, err := s.m.opts.NewProber(w.mod)
		if err != nil {
			s.m.log.Error("probe module cannot be built; its probes will not run", "service", w.service, "module", w.module, "err", err)
			continue
		}
		if old := s.probers[k]; old != nil {
			s.retire(old.p, w.timeout)
		}
		s.probers[k] = &proberEntry{module: w.mod, p: p}
	}

	now := s.m.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[taskKey]bool, len(wants))
	for _, w := range wants {
		e := s.probers[proberKey{w.service, w.module}]
		if e == nil {
			continue
		}
		seen[w.key] = true
		t := s.tasks[w.key]
		if t == nil {
			t = &task{key: w.key, index: -1}
			s.tasks[w.key] = t
		}
		changedIv := t.interval != w.interval || t.target != w.target
		t.target, t.interval, t.timeout, t.prober = w.target, w.interval, w.timeout, e.p
		if t.index < 0 || changedIv {
			// Re-spread: the first run at the task's phase in the current
			// interval (or the next one), plus up to 5% jitter.
			base := now - now%w.interval + phase(w.target, w.module, w.interval)
			for base <= now {
				base += w.interval
			}
			j := time.Duration(rand.Int64N(int64(w.interval/20) + 1))
			t.next = base + j
			if t.index < 0 {
				heap.Push(&s.queue, t)
			} else {
				heap.Fix(&s.queue, t.index)
			}
		}
	}
	for k, t := range s.tasks {
		if !seen[k] {
			t.removed = true
			if t.index >= 0 {
				heap.Remove(&s.queue, t.index)
			}
			delete(s.tasks, k)
		}
	}
	for k, e := range s.probers {
		if !needed[k] {
			s.retireLocked(e.p, e.module.Timeout, now)
			delete(s.probers, k)
		}
	}
}

// retire closes a replaced prober once probes it started have had time to
// finish, so a reload does not fail the probes in flight.
func (s *scheduler) retire(p probe.Prober, timeout time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retireLocked(p, timeout, s.m.now())
}

func (s *scheduler) retireLocked(p probe.Prober, timeout time.Duration, now time.Duration) {
	s.retired = append(s.retired, retiredProber{p: p, at: now + 2*timeout + time.Second})
}

func (s *scheduler) closeRetiredLocked(now time.Duration) {
	kept := s.retired[:0]
	for _, r := range s.retired {
		if now >= r.at {
			r.p.Close()
		} else {
			kept = append(kept, r)
		}
	}
	s.retired = kept
}

// closeProbers releases every prober's pooled connections (after Run).
func (s *scheduler) closeProbers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.probers {
		e.p.Close()
		delete(s.probers, k)
	}
	for _, r := range s.retired {
		r.p.Close()
	}
	s.retired = nil
}

type taskHeap []*task

func (h taskHeap) Len() int           { return len(h) }
func (h taskHeap) Less(i, j int) bool { return h[i].next < h[j].next }
func (h taskHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *taskHeap) Push(x any) {
	t := x.(*task)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *taskHeap) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	old[n-1] = nil
	t.index = -1
	*h = old[:n-1]
	return t
}
