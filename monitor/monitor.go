package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/fb4b1dcc/pulse/clock"
	"github.com/fb4b1dcc/pulse/detector"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/probe"
	"github.com/fb4b1dcc/pulse/store"
	"github.com/fb4b1dcc/pulse/wire"
)

// Options configures a Monitor.
type Options struct {
	// Clock drives judging and probe schedules (default: real).
	Clock clock.Clock
	// Store keeps history and instance snapshots; nil keeps history in
	// memory only (the last EventBuffer events).
	Store store.Store
	// Logger receives transition and failure lines (default: discard).
	Logger *slog.Logger
	// TracerProvider is used for verdict spans and passed to probers
	// (default: the global provider).
	TracerProvider trace.TracerProvider
	// Hooks receive metrics-worthy happenings (default: none).
	Hooks Hooks
	// NewProber builds a prober for a module (default probe.New).
	NewProber func(m probe.Module) (probe.Prober, error)
	// Tick is the judge's resolution (default 50ms).
	Tick time.Duration
	// MaxConcurrentProbes bounds probes in flight (default 1024).
	MaxConcurrentProbes int
	// EventBuffer is how many recent events watchers can catch up on from
	// memory (default 65536).
	EventBuffer int
	// PauseTolerance is how late the judge's own tick may be before the
	// lateness counts as a pause of the monitor (default 200ms).
	PauseTolerance time.Duration
	// SnapshotInterval is how often changed instance snapshots are saved to
	// the store (default 10s).
	SnapshotInterval time.Duration
	// Cluster connects the monitor to its peers (nil: a single node).
	Cluster *ClusterHooks
}

// Monitor judges a fleet. Create it with New, configure it with Apply and
// run it with Run. It implements ingest.Sink for passive beats.
type Monitor struct {
	opts   Options
	clk    clock.Clock
	log    *slog.Logger
	tracer trace.Tracer
	hooks  Hooks
	ledger *detector.PauseLedger

	// origin anchors monotonic time: now = clk.Since(origin).
	origin time.Time

	mu        sync.Mutex
	spec      *Spec
	services  map[string]*service
	order     []*service // by name
	wheel     *wheel
	dueBuf    []*instance
	seq       uint64
	ring      *eventRing
	watchers  map[*Watcher]struct{}
	startedAt time.Duration
	running   bool
	closed    bool
	isolation isolation
	dropped   uint64 // observations for unknown services or instances
	anchors   *anchorSet
	// pendingDeletes are snapshots to delete from the store.
	pendingDeletes []store.Key
	lastPrune      time.Duration
	// outbox holds log lines and spans produced under mu; unlock runs
	// them after releasing it, so no I/O happens under the lock.
	outbox []func()

	directives atomic.Pointer[map[string]wire.Directive]
	specCh     chan struct{} // buffer 1: the scheduler re-reads tasks
	persistQ   chan Event
	wake       chan struct{} // buffer 1: the judge runs now

	sched   *scheduler
	stopped chan struct{}

	runCtx    context.Context // set by Run: confirmations end with it
	confirmWG sync.WaitGroup
}

// New returns a Monitor with no services. It starts nothing; with a Store
// it reads the last event sequence number from it.
func New(opts Options) (*Monitor, error) {
	if opts.Tick < 0 || opts.MaxConcurrentProbes < 0 || opts.EventBuffer < 0 {
		return nil, errors.New("monitor: negative option")
	}
	if opts.Tick == 0 {
		opts.Tick = 50 * time.Millisecond
	}
	if opts.MaxConcurrentProbes == 0 {
		opts.MaxConcurrentProbes = 1024
	}
	if opts.EventBuffer == 0 {
		opts.EventBuffer = 1 << 16
	}
	if opts.SnapshotInterval == 0 {
		opts.SnapshotInterval = 10 * time.Second
	}
	ledger, err := detector.NewPauseLedger(opts.PauseTolerance)
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = otel.GetTracerProvider()
	}
	if opts.Hooks == nil {
		opts.Hooks = nopHooks{}
	}
	if opts.NewProber == nil {
		tp := opts.TracerProvider
		opts.NewProber = func(m probe.Module) (probe.Prober, error) {
			return probe.New(m, probe.WithTracerProvider(tp))
		}
	}
	m := &Monitor{
		opts:     opts,
		clk:      clock.OrReal(opts.Clock),
		log:      opts.Logger,
		tracer:   opts.TracerProvider.Tracer("github.com/fb4b1dcc/pulse/monitor"),
		hooks:    opts.Hooks,
		ledger:   ledger,
		services: map[string]*service{},
		wheel:    newWheel(opts.Tick, 4096),
		ring:     newEventRing(opts.EventBuffer),
		watchers: map[*Watcher]struct{}{},
		specCh:   make(chan struct{}, 1),
		persistQ: make(chan Event, 1<<16),
		wake:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
	}
	m.origin = m.clk.Now()
	if opts.Store != nil {
		// Continue the event sequence of the history, before any event
		// (even Apply's) is numbered.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		seq, err := opts.Store.LastSeq(ctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("monitor: reading the event sequence from the store: %w", err)
		}
		m.seq = seq
	}
	empty := map[string]wire.Directive{}
	m.directives.Store(&empty)
	m.sched = newScheduler(m)
	return m, nil
}

// unlock releases mu, then writes the logs and spans queued under it.
func (m *Monitor) unlock() {
	out := m.outbox
	m.outbox = nil
	m.mu.Unlock()
	for _, f := range out {
		f()
	}
}

// later queues f to run after mu is released.
func (m *Monitor) later(f func()) { m.outbox = append(m.outbox, f) }

// now is monotonic time since the monitor's origin.
func (m *Monitor) now() time.Duration { return m.clk.Since(m.origin) }

// mono converts a time carrying a monotonic reading to monitor time.
func (m *Monitor) mono(t time.Time) time.Duration { return t.Sub(m.origin) }

// wall converts monitor time to wall-clock time for display and storage.
func (m *Monitor) wall(d time.Duration) time.Time {
	if d == 0 {
		return time.Time{}
	}
	return m.origin.Add(d).Round(0)
}

// Directives implements ingest's Directives callback: the interval, jitter
// and timeout each instance's sender should use now. It reads an immutable
// map swapped by Apply: no lock on the beat path.
func (m *Monitor) Directives(service, _ string) wire.Directive {
	return (*m.directives.Load())[service]
}

// Ledger returns the pause ledger (the local-pause guard).
func (m *Monitor) Ledger() *detector.PauseLedger { return m.ledger }

// Spec returns the applied spec (nil before the first Apply).
func (m *Monitor) Spec() *Spec {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.spec
}

// Run judges until ctx ends: the judge loop, the probe scheduler, the
// store writer and the anchor checks. Before judging it restores instance
// snapshots from the store, so a restart resumes without a down storm. It
// returns after every goroutine it started has exited and the store has
// been flushed. Run may be called once.
func (m *Monitor) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.running || m.closed {
		m.mu.Unlock()
		return errors.New("monitor: Run called twice")
	}
	m.running = true
	m.mu.Unlock()
	defer close(m.stopped)

	if err := m.restore(ctx); err != nil {
		m.log.Warn("restoring instance state from the store failed; starting fresh", "err", err)
	}
	m.mu.Lock()
	m.startedAt = m.now()
	m.runCtx = ctx
	m.mu.Unlock()

	var wg sync.WaitGroup
	run := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	run(m.judgeLoop)
	run(m.sched.run)
	run(m.anchorLoop)
	persistDone := make(chan struct{})
	go func() { defer close(persistDone); m.persistLoop() }()

	<-ctx.Done()
	wg.Wait()
	m.confirmWG.Wait()
	m.mu.Lock()
	m.closed = true
	for w := range m.watchers {
		w.closeLocked()
	}
	clear(m.watchers)
	m.mu.Unlock()
	close(m.persistQ) // every sender holds m.mu and checks closed
	<-persistDone
	m.sched.closeProbers()
	return nil
}

// Done is closed when Run has returned.
func (m *Monitor) Done() <-chan struct{} { return m.stopped }

// judgeLoop visits due instances every Tick. Its own lateness feeds the
// pause ledger: a monitor that was stopped (GC, VM pause, SIGSTOP) does not
// hold the silence against the instances it could not hear.
func (m *Monitor) judgeLoop(ctx context.Context) {
	t := m.clk.NewTimer(m.opts.Tick)
	defer t.Stop()
	scheduled := m.now() + m.opts.Tick
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		case <-m.wake:
		}
		now := m.now()
		if now >= scheduled {
			m.ledger.Late(scheduled, now)
		}
		m.judgeDue(now)
		scheduled = now + m.opts.Tick
		t.Reset(m.opts.Tick)
	}
}

// judgeDue judges every instance whose wake time has come.
func (m *Monitor) judgeDue(now time.Duration) {
	m.mu.Lock()
	defer m.unlock()
	m.dueBuf = m.wheel.advance(now, m.dueBuf[:0])
	for _, in := range m.dueBuf {
		if in.gone {
			continue
		}
		m.judgeLocked(in, now)
	}
	clear(m.dueBuf)
	for _, s := range m.order {
		m.checkProtectionLocked(s, now)
	}
}

// Apply installs a new spec: services and instances are added, changed or
// removed (removed instances leave after their grace), detector parameters
// swap, probe schedules re-spread, and senders learn new intervals from
// their next ACK. State of unchanged instances is kept.
func (m *Monitor) Apply(spec *Spec) error {
	if spec == nil {
		return errors.New("monitor: nil spec")
	}
	built := make(map[string]*serviceConfig, len(spec.Services))
	var errs []error
	for i := range spec.Services {
		ss := &spec.Services[i]
		if _, dup := built[ss.Name]; dup {
			errs = append(errs, fmt.Errorf("monitor: service %q declared twice", ss.Name))
			continue
		}
		sc, err := m.buildServiceConfig(ss)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		built[ss.Name] = sc
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	m.mu.Lock()
	now := m.now()
	for name, sc := range built {
		s := m.services[name]
		if s == nil {
			s = newService(name, m.hooks.ForService(name))
			m.services[name] = s
		}
		m.applyServiceLocked(s, sc, now)
	}
	for name, s := range m.services {
		if built[name] == nil && !s.removed {
			m.removeServiceLocked(s, now)
		}
	}
	m.order = m.order[:0]
	for _, s := range m.services {
		m.order = append(m.order, s)
	}
	sort.Slice(m.order, func(i, j int) bool { return m.order[i].name < m.order[j].name })
	for _, s := range slices.Clone(m.order) {
		m.dropServiceLocked(s)
	}
	m.spec = spec
	m.anchors = newAnchorSet(spec.Anchors, spec.AnchorInterval)

	dirs := make(map[string]wire.Directive, len(spec.Services))
	for _, ss := range spec.Services {
		if ss.Passive.Enabled {
			dirs[ss.Name] = wire.Directive{Interval: ss.Passive.Interval, Jitter: ss.Passive.Jitter}
		}
	}
	m.directives.Store(&dirs)
	m.emitLocked(Event{Source: "config", To: "applied", Reason: fmt.Sprintf("configuration %s applied: %d services", spec.Hash, len(spec.Services))}, now)
	m.unlock()

	select {
	case m.specCh <- struct{}{}:
	default:
	}
	return nil
}

// ObserveBatch implements ingest.Sink: passive beats enter the verdict path
// here. It holds the lock once per batch and allocates nothing per beat for
// known instances.
func (m *Monitor) ObserveBatch(obs []ingest.Observation) {
	obs = m.forwardForeign(obs)
	m.mu.Lock()
	for i := range obs {
		m.observeBeatLocked(&obs[i])
	}
	m.unlock()
}

var _ ingest.Sink = (*Monitor)(nil)

// Deregister removes an instance at once (a graceful leave): it is not
// judged down, and an event records the leave.
func (m *Monitor) Deregister(service, instance, reason string) error {
	m.mu.Lock()
	defer m.unlock()
	s := m.services[service]
	if s == nil {
		return fmt.Errorf("%w: service %q", ErrNotFound, service)
	}
	in := s.byName[instance]
	if in == nil {
		return fmt.Errorf("%w: instance %q of service %q", ErrNotFound, instance, service)
	}
	if reason == "" {
		reason = "deregistered"
	}
	now := m.now()
	m.transitionLocked(in, Left, "api", reason, now)
	m.deleteInstanceLocked(in)
	return nil
}

// ErrNotFound is returned for unknown services and instances.
var ErrNotFound = errors.New("not found")

// Dropped returns how many observations named an unknown service or an
// instance the service does not admit.
func (m *Monitor) Dropped() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dropped
}

func (m *Monitor) kick() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// sortedNames returns the keys of a map in order.
func sortedNames[V any](mp map[string]V) []string {
	out := make([]string, 0, len(mp))
	for k := range mp {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
