package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/fb4b1dcc/pulse/condition"
	"github.com/fb4b1dcc/pulse/status"
)

// GRPCConfig is the grpc prober's part of a module: a grpc.health.v1 Check.
type GRPCConfig struct {
	// Service is the name asked about ("" is the server as a whole).
	Service string `yaml:"service,omitempty" json:"service,omitempty"`
	// TLS turns on TLS (configured by Module.TLS); mutual TLS when a client
	// certificate is set there.
	TLS bool `yaml:"tls,omitempty" json:"tls,omitempty"`
	// Metadata is sent with every check.
	Metadata map[string]string `yaml:"metadata,omitempty" json:"metadata,omitempty"`
}

type grpcProber struct {
	*base
	cfg    GRPCConfig
	conds  *condition.Set
	tlsCfg *tls.Config // nil: plaintext
	md     metadata.MD
	idle   time.Duration

	mu        sync.Mutex
	targets   map[string]*grpcTarget
	lastSweep time.Time
}

// grpcTarget is one target's ClientConn, reused across probes.
type grpcTarget struct {
	addr     string
	cc       *grpc.ClientConn
	lastUsed atomic.Int64 // unix nanos

	mu      sync.Mutex
	started uint64    // connection attempts started; the latest one's id
	seq     uint64    // connection attempts finished
	dial    *recorder // phases of the latest connection attempt
	dialID  uint64    // id of the latest attempt
	doneID  uint64    // id of the latest finished attempt
	done    chan struct{}
	result  error // outcome of attempt doneID
}

type targetState struct {
	started, seq, dialID, doneID uint64
	dial                         *recorder
	done                         chan struct{}
	result                       error
}

func newGRPC(m Module, b *base) (*grpcProber, error) {
	conds, err := compileConditions(m.Conditions)
	if err != nil {
		return nil, err
	}
	p := &grpcProber{
		base:    b,
		cfg:     m.GRPC,
		conds:   conds,
		targets: map[string]*grpcTarget{},
		idle:    max(3*m.Interval, 90*time.Second),
		md:      metadata.MD{},
	}
	for k, v := range m.GRPC.Metadata {
		p.md.Set(k, v)
	}
	if m.GRPC.TLS {
		if p.tlsCfg, err = m.TLS.build(); err != nil {
			return nil, fmt.Errorf("probe: %w", err)
		}
	}
	return p, nil
}

// newTarget creates (but does not connect) a ClientConn for addr.
func (p *grpcProber) newTarget(addr string) (*grpcTarget, error) {
	t := &grpcTarget{addr: addr, dial: &recorder{}, done: make(chan struct{})}
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if p.tlsCfg != nil {
		host, _, _ := net.SplitHostPort(addr)
		creds = &timedCreds{TransportCredentials: credentials.NewTLS(forHost(p.tlsCfg, host)), p: p, t: t}
	}
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			id, rec := t.startAttempt()
			c, err := p.dialer.dial(ctx, "tcp", a, rec)
			if err != nil || p.tlsCfg == nil {
				t.finishAttempt(id, err)
			}
			return c, err
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2,
				MaxDelay: max(p.m.Interval, time.Second),
			},
			MinConnectTimeout: p.m.DialTimeout + p.m.HandshakeTimeout,
		}),
		grpc.WithStatsHandler(rpcStats{}),
		grpc.WithUserAgent("pulse-probe/1"),
		grpc.WithDisableRetry(),
		grpc.WithDisableServiceConfig(),
		grpc.WithIdleTimeout(p.idle),
	)
	if err != nil {
		return nil, status.Errorf(status.ClassOther, "target %q: %w", addr, err)
	}
	t.cc = cc
	return t, nil
}

func (t *grpcTarget) startAttempt() (uint64, *recorder) {
	rec := &recorder{}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.started++
	t.dial, t.dialID = rec, t.started
	return t.started, rec
}

// finishAttempt publishes the outcome of a connection attempt and wakes
// probes waiting for it.
func (t *grpcTarget) finishAttempt(id uint64, err error) {
	t.mu.Lock()
	t.seq++
	if id >= t.doneID {
		t.doneID, t.result = id, err
	}
	close(t.done)
	t.done = make(chan struct{})
	t.mu.Unlock()
}

func (t *grpcTarget) snapshot() targetState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return targetState{started: t.started, seq: t.seq, dialID: t.dialID, doneID: t.doneID,
		dial: t.dial, done: t.done, result: t.result}
}

// timedCreds wraps gRPC's TLS credentials to time the handshake, bound it
// by the module's handshake deadline and report its outcome.
type timedCreds struct {
	credentials.TransportCredentials
	p *grpcProber
	t *grpcTarget
}

func (c *timedCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	st := c.t.snapshot()
	id, rec := st.dialID, st.dial
	ctx, cancel := c.p.dialer.bounded(ctx, c.p.m.HandshakeTimeout)
	defer cancel()
	release, err := c.p.dialer.handshakeSlot(ctx)
	if err != nil {
		err = status.WithClass(status.ClassTimeout, fmt.Errorf("TLS handshake with %s: waiting for a handshake slot: %w", raw.RemoteAddr(), c.p.dialer.why(ctx, err)))
		rec.set(func(r *recorder) { r.dialErr = err })
		c.t.finishAttempt(id, err)
		return nil, nil, err
	}
	defer release()
	rec.mark(&rec.tlsStart)
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	rec.mark(&rec.tlsEnd)
	if err != nil {
		err = c.p.dialer.why(ctx, err)
		cls := status.Classify(err)
		if cls != status.ClassTimeout && cls != status.ClassRefused {
			cls = status.ClassTLS
		}
		err = status.WithClass(cls, fmt.Errorf("TLS handshake with %s: %w", raw.RemoteAddr(), err))
		rec.set(func(r *recorder) { r.dialErr = err })
		c.t.finishAttempt(id, err)
		return nil, nil, err
	}
	rec.set(func(r *recorder) {
		r.handshakes++
		if ti, ok := info.(credentials.TLSInfo); ok {
			cs := ti.State
			r.tlsState = &cs
		}
	})
	c.t.finishAttempt(id, nil)
	return conn, info, nil
}

func (c *timedCreds) Clone() credentials.TransportCredentials {
	return &timedCreds{TransportCredentials: c.TransportCredentials.Clone(), p: c.p, t: c.t}
}

// rpcStats timestamps the RPC's request, first response byte and end into
// the probe's recorder carried by the RPC context.
type rpcStats struct{}

func (rpcStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (rpcStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (rpcStats) HandleConn(context.Context, stats.ConnStats) {}
func (rpcStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	rec, ok := ctx.Value(recorderKey{}).(*recorder)
	if !ok {
		return
	}
	now := time.Now()
	rec.set(func(r *recorder) {
		switch s.(type) {
		case *stats.OutHeader:
			r.connected = true
			r.gotConn = now
			if r.wrote.IsZero() {
				r.wrote = now
			}
		case *stats.OutPayload:
			if r.firstByte.IsZero() {
				r.wrote = now
			}
		case *stats.InHeader, *stats.InTrailer:
			if r.firstByte.IsZero() {
				r.firstByte = now
			}
		case *stats.End:
			r.end = now
		}
	})
}

// grpcAttempt is one Check on one ClientConn.
type grpcAttempt struct {
	t      *grpcTarget
	rec    *recorder
	reused bool
	resp   *healthpb.HealthCheckResponse
	err    error
	code   codes.Code
}

func (a *grpcAttempt) ok() bool { return a.err == nil }

// discard is a no-op: a fresh ClientConn that answers replaces the old one.
func (a *grpcAttempt) discard() {}

func (a *grpcAttempt) staleFailure() bool {
	a.rec.mu.Lock()
	defer a.rec.mu.Unlock()
	return a.err != nil && a.rec.reused && a.rec.firstByte.IsZero() &&
		(a.code == codes.DeadlineExceeded || a.code == codes.Unavailable)
}

// Probe runs grpc.health.v1 Check against target ("host:port", optionally
// with a grpc:// or grpcs:// prefix).
func (p *grpcProber) Probe(ctx context.Context, target string) Result {
	start := time.Now()
	r := Result{Kind: KindGRPC, Target: target, Start: p.clock.Now()}
	ctx, end, ok := p.begin(ctx)
	defer end()
	if !ok {
		r.fail(errClosed)
		return r
	}
	ctx, span := p.startSpan(ctx, target)
	host, port, err := hostPort(target, "")
	if err != nil {
		r.fail(status.WithClass(status.ClassOther, err))
		r.Latency = time.Since(start)
		p.endSpan(ctx, span, &r)
		return r
	}
	addr := net.JoinHostPort(host, port)
	t, err := p.target(addr)
	if err != nil {
		r.fail(err)
		r.Latency = time.Since(start)
		p.endSpan(ctx, span, &r)
		return r
	}

	md := p.md.Copy()
	traceContext.Inject(ctx, mdCarrier(md))
	rctx := metadata.NewOutgoingContext(ctx, md)

	firstAttempt := &grpcAttempt{t: t, rec: &recorder{}}
	first := func(ctx context.Context) *grpcAttempt {
		p.check(ctx, firstAttempt)
		return firstAttempt
	}
	var freshAttempt *grpcAttempt
	var freshMu sync.Mutex
	fresh := func(ctx context.Context) *grpcAttempt {
		a := &grpcAttempt{rec: &recorder{}}
		freshMu.Lock()
		freshAttempt = a
		freshMu.Unlock()
		nt, err := p.newTarget(addr)
		if err != nil {
			a.err = err
			return a
		}
		a.t = nt
		p.check(ctx, a)
		if a.err == nil {
			p.replace(addr, t, nt) // the fresh connection answered: it becomes the pooled one
		} else {
			nt.cc.Close()
		}
		return a
	}
	// suspect runs on a timer while first is in flight.
	suspect := func() bool {
		rec := firstAttempt.rec
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.reused && rec.firstByte.IsZero()
	}
	a, retried := withFreshRetry(rctx, p.base, suspect, first, fresh)
	r.Latency = time.Since(start)
	p.finish(ctx, &r, a, retried)
	var recs []*recorder
	recs = append(recs, firstAttempt.rec)
	freshMu.Lock()
	if freshAttempt != nil {
		recs = append(recs, freshAttempt.rec)
	}
	freshMu.Unlock()
	p.endSpan(ctx, span, &r, recs...)
	return r
}

// check performs one Check on a.t, copying the connection phases of a
// connection attempt that happened during it.
func (p *grpcProber) check(ctx context.Context, a *grpcAttempt) {
	t := a.t
	t.lastUsed.Store(time.Now().UnixNano())
	s0 := t.snapshot()
	st := t.cc.GetState()
	// Reuse is judged from our own record of connection attempts: the
	// channel's published state lags the transport by a moment.
	a.reused = s0.seq > 0 && s0.result == nil && s0.started == s0.doneID &&
		st != connectivity.Idle && st != connectivity.TransientFailure && st != connectivity.Shutdown
	a.rec.set(func(r *recorder) { r.reused, r.connected = a.reused, a.reused })
	waitForReady := false
	if st == connectivity.TransientFailure {
		// The channel is backing off after a failure: try again now and
		// fail fast if that attempt fails too.
		if err := p.reconnect(ctx, t, s0.started); err != nil {
			a.err, a.code = err, codes.Unavailable
			p.copyDial(t, s0.started, a.rec)
			return
		}
		waitForReady = true // the new connection works: wait for READY
	}
	rctx := withRecorder(ctx, a.rec)
	client := healthpb.NewHealthClient(t.cc)
	req := &healthpb.HealthCheckRequest{Service: p.cfg.Service}
	resp, err := client.Check(rctx, req, grpc.WaitForReady(waitForReady))
	if grpcstatus.Code(err) == codes.Unavailable && !waitForReady && ctx.Err() == nil {
		// The failure may come from an attempt that began before this probe
		// (the target may be back since): judge by a new attempt.
		if s := t.snapshot(); s.doneID <= s0.started && s.result != nil {
			if rerr := p.reconnect(ctx, t, s.started); rerr == nil {
				resp, err = client.Check(rctx, req, grpc.WaitForReady(true))
			}
		}
	}
	p.copyDial(t, s0.started, a.rec)
	if err != nil {
		a.code = grpcstatus.Code(err)
		a.err = p.explain(ctx, t, a, err)
		return
	}
	a.resp = resp
}

// reconnect asks the channel to connect now and waits for an attempt that
// started after attempt id `after`; it returns that attempt's error.
func (p *grpcProber) reconnect(ctx context.Context, t *grpcTarget, after uint64) error {
	t.cc.ResetConnectBackoff()
	t.cc.Connect()
	s := t.snapshot()
	for s.doneID <= after {
		select {
		case <-s.done:
		case <-ctx.Done():
			return nil // let the RPC report the deadline
		}
		s = t.snapshot()
	}
	return s.result
}

// copyDial moves the phases of a connection attempt made during this probe
// (finished, or still in progress when the probe gave up) into rec.
func (p *grpcProber) copyDial(t *grpcTarget, startedBefore uint64, rec *recorder) {
	snap := t.snapshot()
	d := snap.dial
	d.mu.Lock()
	cp := recorder{
		dnsStart: d.dnsStart, dnsEnd: d.dnsEnd, connStart: d.connStart, connEnd: d.connEnd,
		tlsStart: d.tlsStart, tlsEnd: d.tlsEnd, handshakes: d.handshakes, tlsState: d.tlsState,
		peer: d.peer, connected: d.connected, dialErr: d.dialErr,
	}
	d.mu.Unlock()
	rec.set(func(r *recorder) {
		r.peer = cp.peer
		r.tlsState = cp.tlsState
		if snap.dialID <= startedBefore {
			return // the connection predates this probe: no dial phases to report
		}
		r.dnsStart, r.dnsEnd, r.connStart, r.connEnd = cp.dnsStart, cp.dnsEnd, cp.connStart, cp.connEnd
		r.tlsStart, r.tlsEnd, r.handshakes, r.dialErr = cp.tlsStart, cp.tlsEnd, cp.handshakes, cp.dialErr
		if cp.connected {
			r.connected = true
		}
	})
}

// explain classifies a failed Check.
func (p *grpcProber) explain(ctx context.Context, t *grpcTarget, a *grpcAttempt, err error) error {
	s := grpcstatus.Convert(err)
	a.rec.mu.Lock()
	dialErr, connected := a.rec.dialErr, a.rec.connected
	a.rec.mu.Unlock()
	if p.closed.Load() {
		return errClosed
	}
	switch s.Code() {
	case codes.NotFound:
		return status.Errorf(status.ClassProtocol, "SERVICE_UNKNOWN: service %q is not known to the health server (%s)", p.cfg.Service, s.Message())
	case codes.Unimplemented:
		return status.Errorf(status.ClassProtocol, "the server does not implement grpc.health.v1.Health: %s", s.Message())
	case codes.DeadlineExceeded, codes.Canceled:
		// "connected" for gRPC means the channel carried the RPC (READY),
		// as for grpc_health_probe's blocking dial.
		stage := a.rec.stage()
		if !connected && stage != "TLS handshake" && stage != "TCP connect" && stage != "DNS lookup" {
			a.rec.mu.Lock()
			dialed := !a.rec.connEnd.IsZero() && a.rec.dialErr == nil
			a.rec.mu.Unlock()
			stage = "connecting"
			if dialed {
				stage = "HTTP/2 setup (the server accepted the connection but does not speak gRPC)"
			}
		}
		msg := "timeout during " + stage
		if dialErr != nil {
			msg += " (" + dialErr.Error() + ")"
		}
		return status.Errorf(status.ClassTimeout, "%s: %w", msg, context.DeadlineExceeded)
	case codes.Unavailable:
		if dialErr != nil {
			return dialErr
		}
		if last := t.snapshot().result; last != nil && !connected {
			return last
		}
		cls := status.ClassRefused
		if strings.Contains(s.Message(), "handshake") {
			cls = status.ClassTLS
		}
		return status.Errorf(cls, "unavailable: %s", s.Message())
	}
	return status.Errorf(status.ClassProtocol, "health check failed: %s: %s", s.Code(), s.Message())
}

// finish fills r from the winning attempt and judges it.
func (p *grpcProber) finish(ctx context.Context, r *Result, a *grpcAttempt, retried bool) {
	r.Retried = retried
	r.Phases = a.rec.phases()
	a.rec.mu.Lock()
	r.Reused, r.Connected, r.Peer, r.Handshakes = a.rec.reused, a.rec.connected, a.rec.peer, a.rec.handshakes
	cs := a.rec.tlsState
	a.rec.mu.Unlock()
	info := tlsInfo(cs)
	if info != nil {
		r.TLSNotAfter = info.NotAfter
	}
	if a.err != nil {
		if a.code == codes.NotFound {
			r.GRPCStatus = "SERVICE_UNKNOWN"
			r.Connected = true
		}
		if a.code == codes.Unimplemented {
			r.Connected = true
		}
		r.fail(a.err)
		return
	}
	r.Connected = true
	st := a.resp.GetStatus()
	r.GRPCStatus = st.String()
	r.Body = r.GRPCStatus
	if st != healthpb.HealthCheckResponse_SERVING {
		err := status.Errorf(status.ClassCondition, "service %q is %s", p.cfg.Service, st)
		r.fail(err)
		return
	}
	now := p.clock.Now()
	v := p.conds.Eval(context.WithoutCancel(ctx), &condition.Input{
		Status:  int(st),
		Body:    []byte(r.GRPCStatus),
		Latency: r.Latency,
		TLS:     info,
		Now:     now,
	})
	r.Reason = "SERVING"
	r.judge(v)
	if r.Status == status.Healthy && p.m.ExpiryWarning > 0 {
		if deg, exp, why := expiry(info, now, p.m.ExpiryWarning); exp {
			r.fail(status.Errorf(status.ClassTLS, "%s", why))
		} else if deg {
			r.Status, r.Class, r.Reason = status.Degraded, status.ClassTLS, why
		}
	}
}

// target returns the ClientConn for addr, creating it on first use, and
// now and then closes the ones no probe has used for a while (targets the
// monitor stopped probing).
func (p *grpcProber) target(addr string) (*grpcTarget, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.targets == nil {
		return nil, errClosed
	}
	now := time.Now()
	if now.Sub(p.lastSweep) > p.idle {
		p.lastSweep = now
		for k, t := range p.targets {
			if now.Sub(time.Unix(0, t.lastUsed.Load())) > p.idle {
				delete(p.targets, k)
				t.cc.Close()
			}
		}
	}
	if t, ok := p.targets[addr]; ok {
		return t, nil
	}
	t, err := p.newTarget(addr)
	if err != nil {
		return nil, err
	}
	t.lastUsed.Store(now.UnixNano())
	p.targets[addr] = t
	return t, nil
}

// replace swaps old for nt as addr's pooled ClientConn and closes old.
func (p *grpcProber) replace(addr string, old, nt *grpcTarget) {
	p.mu.Lock()
	if p.targets == nil || p.targets[addr] != old {
		p.mu.Unlock()
		nt.cc.Close() // closed, or another probe replaced it first
		return
	}
	p.targets[addr] = nt
	p.mu.Unlock()
	old.cc.Close()
}

// Close closes every target's ClientConn.
func (p *grpcProber) Close() error {
	if !p.close() {
		return nil
	}
	p.mu.Lock()
	targets := p.targets
	p.targets = nil
	p.mu.Unlock()
	var errs []error
	for _, t := range targets {
		if err := t.cc.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
