package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fb4b1dcc/pulse/clock"
	"github.com/fb4b1dcc/pulse/wire"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// Receiver receives beats and hands them to a Sink.
type Receiver struct {
	cfg    Config
	clock  clock.Clock
	tracer trace.Tracer
	origin time.Time // monotonic origin for lastSeen

	keys   atomic.Pointer[wire.Keyring]
	tokens atomic.Pointer[map[string][]string]

	table *table
	q     *queue
	c     counters

	running atomic.Bool
	ready   chan struct{}
	udpAddr atomic.Pointer[net.UDPAddr]
}

// New validates cfg and returns a Receiver. It binds nothing and starts no
// goroutine; Run does.
func New(cfg Config, opts ...Option) (*Receiver, error) {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	o := resolveOptions(opts)
	r := &Receiver{
		cfg:    cfg,
		clock:  o.clock,
		tracer: o.tp.Tracer("github.com/fb4b1dcc/pulse/ingest"),
		table:  newTable(cfg.MaxInstances),
		q:      newQueue(cfg.QueueSize),
		ready:  make(chan struct{}),
	}
	r.origin = r.clock.Now()
	r.keys.Store(cfg.Keys)
	toks := copyTokens(cfg.Tokens)
	r.tokens.Store(&toks)
	return r, nil
}

func copyTokens(m map[string][]string) map[string][]string {
	out := make(map[string][]string, len(m))
	for k, v := range m {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// SetKeys replaces the UDP keyring (key rotation) without a restart.
func (r *Receiver) SetKeys(k *wire.Keyring) { r.keys.Store(k) }

// SetTokens replaces the bearer tokens without a restart.
func (r *Receiver) SetTokens(m map[string][]string) error {
	if err := checkTokens(m); err != nil {
		return err
	}
	toks := copyTokens(m)
	r.tokens.Store(&toks)
	return nil
}

// Ready is closed once Run has bound its listeners.
func (r *Receiver) Ready() <-chan struct{} { return r.ready }

// UDPAddr is the bound UDP address (nil before Ready or without UDP).
func (r *Receiver) UDPAddr() *net.UDPAddr { return r.udpAddr.Load() }

// Stats returns a snapshot of the counters.
func (r *Receiver) Stats() Stats {
	var s Stats
	for i := range s.Received {
		s.Received[i] = r.c.received[i].Load()
		s.Accepted[i] = r.c.accepted[i].Load()
	}
	for i := range s.Dropped {
		s.Dropped[i] = r.c.dropped[i].Load()
	}
	s.QueueDepth = int(r.q.depth.Load())
	s.QueueCap = len(r.q.buf)
	s.ReadBatches = r.c.readBatches.Load()
	s.SinkBatches = r.c.sinkBatches.Load()
	for i := range BatchBuckets {
		s.ReadBatchSizes[i] = r.c.readSizes[i].Load()
		s.SinkBatchSizes[i] = r.c.sinkSizes[i].Load()
	}
	s.AcksSent = r.c.acks.Load()
	s.AckErrors = r.c.ackErrors.Load()
	s.ReadErrors = r.c.readErrors.Load()
	s.Panics = r.c.panics.Load()
	s.Instances = r.table.len()
	s.Swept = r.c.swept.Load()
	return s
}

// Run binds the configured listeners, serves until ctx is done, then
// stops every server and reader, delivers what is still queued to the Sink,
// and returns after all its goroutines have exited. It returns nil on a
// clean stop and an error if a listener could not be bound or failed.
func (r *Receiver) Run(ctx context.Context) (err error) {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("ingest: Run called twice")
	}
	udp, httpLn, grpcLn, err := r.bind()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var readers, servers, sink sync.WaitGroup
	stopSink := make(chan struct{})
	sink.Add(1)
	go r.deliver(stopSink, &sink)

	if udp != nil {
		r.udpAddr.Store(udp.LocalAddr().(*net.UDPAddr))
		for range r.cfg.Readers {
			br, err := newBatchConn(udp, r.cfg.BatchSize, r.cfg.portableBatch)
			if err != nil {
				cancel(err)
				break
			}
			readers.Add(1)
			go r.readUDP(ctx, cancel, br, &readers)
		}
	}
	var hs *http.Server
	if httpLn != nil {
		hs = &http.Server{
			Handler:           r.newMux(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
			IdleTimeout:       5 * time.Minute, // longer than any sane beat interval, so senders keep their connection
			TLSConfig:         r.cfg.TLS,
		}
		servers.Add(1)
		go func() {
			defer servers.Done()
			var err error
			if r.cfg.TLS != nil {
				err = hs.ServeTLS(httpLn, "", "")
			} else {
				err = hs.Serve(httpLn)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				cancel(fmt.Errorf("ingest: HTTP server: %w", err))
			}
		}()
	}
	var gs *grpc.Server
	if grpcLn != nil {
		gs = r.newGRPCServer()
		servers.Add(1)
		go func() {
			defer servers.Done()
			if err := gs.Serve(grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				cancel(fmt.Errorf("ingest: gRPC server: %w", err))
			}
		}()
	}
	servers.Add(1)
	go r.janitor(ctx, &servers)
	close(r.ready)

	<-ctx.Done()
	if udp != nil {
		udp.Close() // unblocks the readers
	}
	if hs != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		if hs.Shutdown(sctx) != nil {
			hs.Close()
		}
		scancel()
	}
	if gs != nil {
		stopGRPC(gs)
	}
	readers.Wait()
	servers.Wait()
	close(stopSink) // the sink drains what is queued, then exits
	sink.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
		return cause
	}
	return nil
}

func (r *Receiver) bind() (udp *net.UDPConn, httpLn, grpcLn net.Listener, err error) {
	udp, httpLn, grpcLn = r.cfg.UDPConn, r.cfg.HTTPListener, r.cfg.GRPCListener
	fail := func(e error) (*net.UDPConn, net.Listener, net.Listener, error) {
		if udp != nil {
			udp.Close()
		}
		if httpLn != nil {
			httpLn.Close()
		}
		if grpcLn != nil {
			grpcLn.Close()
		}
		return nil, nil, nil, e
	}
	if udp == nil && r.cfg.UDPAddr != "" {
		a, err := net.ResolveUDPAddr("udp", r.cfg.UDPAddr)
		if err != nil {
			return fail(fmt.Errorf("ingest: UDP address %q: %w", r.cfg.UDPAddr, err))
		}
		if udp, err = net.ListenUDP("udp", a); err != nil {
			return fail(fmt.Errorf("ingest: listen UDP %s: %w (is another monitor running?)", r.cfg.UDPAddr, err))
		}
	}
	if udp != nil {
		_ = udp.SetReadBuffer(r.cfg.ReadBuffer)
		_ = udp.SetWriteBuffer(r.cfg.ReadBuffer)
	}
	if httpLn == nil && r.cfg.HTTPAddr != "" {
		if httpLn, err = net.Listen("tcp", r.cfg.HTTPAddr); err != nil {
			httpLn = nil
			return fail(fmt.Errorf("ingest: listen HTTP %s: %w", r.cfg.HTTPAddr, err))
		}
	}
	if grpcLn == nil && r.cfg.GRPCAddr != "" {
		if grpcLn, err = net.Listen("tcp", r.cfg.GRPCAddr); err != nil {
			grpcLn = nil
			return fail(fmt.Errorf("ingest: listen gRPC %s: %w", r.cfg.GRPCAddr, err))
		}
	}
	return udp, httpLn, grpcLn, nil
}

// deliver is the only goroutine that calls the Sink. On stop it drains the
// queue first, so nothing accepted (and ACKed) is lost.
func (r *Receiver) deliver(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	batch := make([]Observation, 0, r.cfg.BatchSize)
	drain := func() {
		for {
			batch = r.q.pop(batch[:0])
			if len(batch) == 0 {
				return
			}
			r.c.sinkBatches.Add(1)
			r.c.sinkSizes[bucket(len(batch))].Add(1)
			r.callSink(batch)
			clear(batch)
		}
	}
	for {
		select {
		case <-r.q.wake:
			drain()
		case <-stop:
			drain()
			return
		}
	}
}

func (r *Receiver) callSink(batch []Observation) {
	defer func() {
		if p := recover(); p != nil {
			r.c.panics.Add(1)
		}
	}()
	r.cfg.Sink.ObserveBatch(batch)
}

func (r *Receiver) janitor(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	t := r.clock.NewTicker(max(r.cfg.IdleTTL/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			cut := r.monoNow() - int64(r.cfg.IdleTTL)
			r.c.swept.Add(uint64(r.table.sweep(cut)))
		}
	}
}

// monoNow is the receiver-relative monotonic time in ns.
func (r *Receiver) monoNow() int64 { return int64(r.clock.Since(r.origin)) }

// outcome of judging one authenticated beat.
type outcome uint8

const (
	outAccepted outcome = iota
	outDuplicate
	outReplay
	outOverflow
)

// judge runs the replay window for one authenticated beat and, if it is
// fresh and room > 0, accepts it and takes one unit of room.
func judge(st *instState, epoch, seq uint64, room *int) outcome {
	st.mu.Lock()
	switch st.win.Check(epoch, seq) {
	case wire.Replay:
		st.mu.Unlock()
		return outReplay
	case wire.Duplicate:
		st.mu.Unlock()
		return outDuplicate
	}
	if *room <= 0 {
		st.mu.Unlock()
		return outOverflow
	}
	*room--
	st.win.Accept(epoch, seq)
	st.mu.Unlock()
	return outAccepted
}

func (r *Receiver) directive(st *instState) wire.Directive {
	if r.cfg.Directives == nil {
		return wire.Directive{}
	}
	return r.cfg.Directives(st.service, st.instance)
}

// traceReceive records a receive span as a child of the sender's beat span
// (a remote parent), so send and receive are one trace. Only beats whose
// sender sampled its span get one: the receiver follows the sender's
// sampling decision, and unsampled beats cost nothing on the hot path.
func (r *Receiver) traceReceive(o *Observation) {
	tc := o.TraceParent
	if !tc.IsValid() || !tc.Sampled() {
		return
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID(tc.TraceID), SpanID: trace.SpanID(tc.ParentID),
		TraceFlags: trace.TraceFlags(tc.Flags), Remote: true,
	})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), sc)
	_, span := r.tracer.Start(ctx, "pulse.beat.receive",
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(o.ReceivedAt),
		trace.WithAttributes(
			attribute.String("pulse.service", o.Service),
			attribute.String("pulse.instance", o.Instance),
			attribute.String("pulse.transport", o.Transport.String()),
			attribute.Int64("pulse.seq", int64(o.Seq)),
			attribute.Int("pulse.attempt", int(o.Attempt)),
			attribute.String("pulse.status", o.Status.String()),
			attribute.String("net.peer.addr", o.Peer.String()),
		))
	span.End()
}
