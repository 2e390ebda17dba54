package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fb4b1dcc/pulse/clock"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Errors a Result may carry.
var (
	ErrNoAck      = status.WithClass(status.ClassTimeout, errors.New("heartbeat: no ACK within the beat's window"))
	ErrSuperseded = status.WithClass(status.ClassTimeout, errors.New("heartbeat: the next beat was due before an ACK came"))
	ErrBusy       = status.WithClass(status.ClassTimeout, errors.New("heartbeat: every send slot busy; beat skipped (earlier sends are stuck: check the monitor and Timeout)"))
	ErrNotReady   = status.WithClass(status.ClassRefused, errors.New("heartbeat: no connection to the monitor yet; beat skipped"))
)

// Sender sends heartbeats for one service instance.
type Sender struct {
	cfg    Config
	o      options
	clock  clock.Clock
	tracer trace.Tracer
	svc    []byte
	inst   []byte

	params atomic.Pointer[params]
	dirCh  chan struct{}
	rtt    rttEstimator
	c      counters

	running atomic.Bool
	origin  time.Time // monotonic origin of SentAt
	epoch   uint64
	seq     uint64 // loop goroutine only
}

// params are the live schedule settings; replaced whole when the monitor
// asks for a change.
type params struct {
	interval, jitter, timeout time.Duration
}

// outBeat is one beat in flight.
type outBeat struct {
	seq      uint64
	status   status.Status
	reason   wire.Reason
	sched    time.Time // when it was due
	first    time.Time // first transmission
	interval time.Duration
	timeout  time.Duration
	ctx      context.Context
	span     trace.Span
	trace    wire.TraceContext
}

// New validates cfg. It starts nothing; Run does.
func New(cfg Config, opts ...Option) (*Sender, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	o := resolve(opts)
	s := &Sender{
		cfg: cfg, o: o, clock: o.clock,
		tracer: o.tp.Tracer("github.com/fb4b1dcc/pulse/heartbeat"),
		svc:    []byte(cfg.Service), inst: []byte(cfg.Instance),
		dirCh: make(chan struct{}, 1),
	}
	s.params.Store(&params{interval: cfg.Interval, jitter: cfg.Jitter, timeout: cfg.Timeout})
	s.origin = s.clock.Now()
	s.epoch = cfg.Epoch
	if s.epoch == 0 {
		s.epoch = uint64(time.Now().UnixNano()) // wall clock on purpose: it must grow across restarts
	}
	return s, nil
}

// transport is one way of getting beats to the monitor. send must not
// block; the optional channels let UDP run its ACK handling and
// retransmission timer on the schedule goroutine.
type transport interface {
	start(ctx context.Context, wg *sync.WaitGroup) error
	send(b *outBeat)
	acks() <-chan ackEvent
	onAck(ev ackEvent)
	timer() <-chan time.Time
	onTimer()
	// stop ends whatever is in flight and releases sockets; called once
	// the context is cancelled, before waiting for the goroutines.
	stop()
}

type ackEvent struct {
	ack wire.Ack // Signed and Tag cleared: the reader's buffer is reused
	at  time.Time
}

// Run sends beats until ctx is done, then stops every goroutine it started
// and returns nil. It returns an error only if it cannot start.
func (s *Sender) Run(ctx context.Context) (err error) {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("heartbeat: Run called twice; make a new Sender")
	}
	var tr transport
	switch s.cfg.Transport {
	case wire.UDP:
		tr = newUDP(s)
	case wire.HTTP:
		tr, err = newHTTP(s)
	case wire.GRPC:
		tr, err = newGRPC(s)
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		tr.stop()
		wg.Wait()
	}()
	if err := tr.start(ctx, &wg); err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			s.c.panics.Add(1)
			err = status.Errorf(status.ClassInternal, "heartbeat: schedule loop panicked: %v", p)
		}
	}()
	s.loop(ctx, tr)
	return nil
}

func (s *Sender) loop(ctx context.Context, tr transport) {
	seed1, seed2 := rand.Uint64(), rand.Uint64()
	if s.o.seedS {
		seed1, seed2 = s.o.seed, s.o.seed^0x9e3779b97f4a7c15
	}
	rnd := rand.New(rand.NewPCG(seed1, seed2))
	draw := func(j time.Duration) time.Duration {
		if j <= 0 {
			return 0
		}
		return time.Duration((rnd.Float64()*2 - 1) * float64(j))
	}

	p := s.params.Load()
	// Random phase: senders started together spread over one interval.
	first := time.Duration(rnd.Float64() * float64(p.interval))
	now := s.clock.Now()
	sched := now.Add(first)
	schedInterval := p.interval
	var last time.Time // when the previous beat was due
	timer := s.clock.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
			now := s.clock.Now()
			p := s.params.Load()
			if now.Sub(sched) > p.interval/2 {
				s.c.late.Add(1)
			}
			s.beat(ctx, tr, sched, now, p)
			last = sched
			base := sched
			if now.Sub(sched) > p.interval {
				// Far behind (the process was paused): start over from
				// now rather than firing a burst of catch-up beats.
				base = now
			}
			sched = base.Add(p.interval + draw(p.jitter))
			if sched.Before(now) {
				sched = now
			}
			schedInterval = p.interval
			timer.Reset(sched.Sub(now))
		case <-s.dirCh:
			p := s.params.Load()
			if p.interval == schedInterval || last.IsZero() {
				continue
			}
			// The monitor changed the interval: the next beat follows the
			// previous one by the new interval, not the old one.
			now := s.clock.Now()
			sched = last.Add(p.interval + draw(p.jitter))
			if sched.Before(now) {
				sched = now
			}
			schedInterval = p.interval
			timer.Reset(sched.Sub(now))
		case ev := <-tr.acks():
			tr.onAck(ev)
		case <-tr.timer():
			tr.onTimer()
		}
	}
}

// beat makes the next beat and hands it to the transport.
func (s *Sender) beat(ctx context.Context, tr transport, sched, now time.Time, p *params) {
	s.seq++
	st, reason := s.status()
	bctx, span := s.tracer.Start(ctx, "pulse.beat.send",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("pulse.service", s.cfg.Service),
			attribute.String("pulse.instance", s.cfg.Instance),
			attribute.String("pulse.transport", s.cfg.Transport.String()),
			attribute.Int64("pulse.seq", int64(s.seq)),
			attribute.String("pulse.status", st.String()),
		))
	b := &outBeat{
		seq: s.seq, status: st, reason: reason, sched: sched, first: now,
		interval: p.interval, timeout: p.timeout, ctx: bctx, span: span,
	}
	if sc := span.SpanContext(); sc.IsValid() {
		b.trace = wire.TraceContext{TraceID: sc.TraceID(), ParentID: sc.SpanID(), Flags: byte(sc.TraceFlags())}
	}
	s.c.beats.Add(1)
	tr.send(b)
}

func (s *Sender) status() (st status.Status, r wire.Reason) {
	if s.cfg.Status == nil {
		return status.Healthy, wire.ReasonNone
	}
	defer func() {
		if p := recover(); p != nil {
			s.c.panics.Add(1)
			st, r = status.Unknown, wire.ReasonNone
		}
	}()
	return s.cfg.Status()
}

// finish ends a beat: span, counters, callback.
func (s *Sender) finish(b *outBeat, res Result) {
	res.Seq, res.Epoch, res.Status, res.SentAt = b.seq, s.epoch, b.status, b.first
	if res.Acked {
		s.c.acked.Add(1)
		b.span.SetAttributes(attribute.Int("pulse.attempts", res.Attempts), attribute.Int64("pulse.rtt_us", res.RTT.Microseconds()))
	} else {
		switch {
		case errors.Is(res.Err, ErrNoAck) || errors.Is(res.Err, ErrSuperseded):
			s.c.unacked.Add(1)
		case errors.Is(res.Err, ErrBusy) || errors.Is(res.Err, ErrNotReady):
			s.c.skipped.Add(1)
		default:
			s.c.errors.Add(1)
		}
		if res.Err != nil {
			b.span.RecordError(res.Err)
			b.span.SetStatus(codes.Error, res.Err.Error())
		}
	}
	b.span.End()
	if f := s.cfg.OnResult; f != nil {
		func() {
			defer func() {
				if p := recover(); p != nil {
					s.c.panics.Add(1)
				}
			}()
			f(res)
		}()
	}
}

// applyDirective adopts what the monitor asked for, within the configured
// bounds, and wakes the schedule if the interval changed.
func (s *Sender) applyDirective(d wire.Directive) {
	if d == (wire.Directive{}) {
		return
	}
	old := s.params.Load()
	p := *old
	if d.Interval > 0 {
		p.interval = min(max(d.Interval, s.cfg.MinInterval), s.cfg.MaxInterval)
	}
	if d.Jitter > 0 {
		p.jitter = d.Jitter
	}
	p.jitter = min(p.jitter, p.interval/2)
	if d.Timeout > 0 {
		p.timeout = min(max(d.Timeout, time.Millisecond), max(p.interval, time.Millisecond))
	}
	if p == *old {
		return
	}
	if s.params.CompareAndSwap(old, &p) {
		s.c.directives.Add(1)
		select {
		case s.dirCh <- struct{}{}:
		default:
		}
	}
}

// sentAt is the SentAt a transmission at now carries.
func (s *Sender) sentAt(now time.Time) time.Duration { return now.Sub(s.origin) }

// rttEstimator is RFC 6298's smoothed RTT and variance.
type rttEstimator struct {
	mu           sync.Mutex
	srtt, rttvar time.Duration
	last         time.Duration
	n            uint64
}

func (e *rttEstimator) sample(r time.Duration) {
	if r < 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.last = r
	e.n++
	if e.n == 1 {
		e.srtt, e.rttvar = r, r/2
		return
	}
	d := e.srtt - r
	if d < 0 {
		d = -d
	}
	e.rttvar = (3*e.rttvar + d) / 4
	e.srtt = (7*e.srtt + r) / 8
}

func (e *rttEstimator) get() (srtt, rttvar, last time.Duration, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srtt, e.rttvar, e.last, e.n > 0
}

// Stats is a snapshot of a Sender's counters and live settings.
type Stats struct {
	Beats         uint64 // beats made (first transmissions attempted)
	Acked         uint64 // beats the monitor answered
	Unacked       uint64 // beats whose window closed without an answer
	Skipped       uint64 // beats not sent: no connection yet, or every send slot busy
	Errors        uint64 // beats that failed otherwise (refused, rejected, ...)
	Retransmits   uint64 // UDP retransmissions
	StaleAcks     uint64 // ACKs for a beat no longer outstanding (ignored)
	BadAcks       uint64 // ACKs that did not decode or verify (ignored)
	Retries       uint64 // HTTP retries on a fresh connection
	Reconnects    uint64 // gRPC stream re-openings
	ConnsOpened   uint64 // HTTP/gRPC connections dialled
	TLSHandshakes uint64
	HandshakeTime time.Duration // total connect + TLS time of new HTTP connections
	Late          uint64        // beats fired more than Interval/2 after they were due
	Directives    uint64        // changes the monitor asked for and the sender applied
	Panics        uint64        // recovered panics (status function, callback, loop)
	SRTT, RTTVar  time.Duration
	LastRTT       time.Duration
	Interval      time.Duration // in use now
	Jitter        time.Duration
	Timeout       time.Duration
}

type counters struct {
	beats, acked, unacked, skipped, errors, retransmits atomic.Uint64
	staleAcks, badAcks, retries, reconnects, conns, tls atomic.Uint64
	handshakeNS, late, directives, panics               atomic.Uint64
}

// Stats returns a snapshot.
func (s *Sender) Stats() Stats {
	p := s.params.Load()
	srtt, rttvar, last, _ := s.rtt.get()
	return Stats{
		Beats: s.c.beats.Load(), Acked: s.c.acked.Load(), Unacked: s.c.unacked.Load(), Skipped: s.c.skipped.Load(),
		Errors: s.c.errors.Load(), Retransmits: s.c.retransmits.Load(), StaleAcks: s.c.staleAcks.Load(),
		BadAcks: s.c.badAcks.Load(), Retries: s.c.retries.Load(), Reconnects: s.c.reconnects.Load(),
		ConnsOpened: s.c.conns.Load(), TLSHandshakes: s.c.tls.Load(), HandshakeTime: time.Duration(s.c.handshakeNS.Load()),
		Late: s.c.late.Load(), Directives: s.c.directives.Load(), Panics: s.c.panics.Load(),
		SRTT: srtt, RTTVar: rttvar, LastRTT: last,
		Interval: p.interval, Jitter: p.jitter, Timeout: p.timeout,
	}
}

// Epoch is the restart epoch this Sender's beats carry.
func (s *Sender) Epoch() uint64 { return s.epoch }

func (s *Sender) String() string {
	return fmt.Sprintf("heartbeat.Sender(%s/%s via %v to %s)", s.cfg.Service, s.cfg.Instance, s.cfg.Transport, s.cfg.Target)
}
