package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/fb4b1dcc/pulse/clock"
	"github.com/fb4b1dcc/pulse/condition"
	"github.com/fb4b1dcc/pulse/status"
)

// Kind names a prober.
type Kind string

const (
	KindHTTP Kind = "http" // http:// and https:// URLs
	KindGRPC Kind = "grpc" // grpc.health.v1 Check
	KindTCP  Kind = "tcp"  // connect, optional send/expect
	KindTLS  Kind = "tls"  // handshake and certificate expiry
	KindUDP  Kind = "udp"  // send a payload, expect a matching reply
	KindDNS  Kind = "dns"  // resolve a name, expect answers
)

// Defaults.
const (
	DefaultTimeout       = 2 * time.Second
	DefaultInterval      = 10 * time.Second
	DefaultBodyLimit     = 64 << 10
	DefaultExpiryWarning = 14 * 24 * time.Hour
	excerptLimit         = 512
)

// Module is one probe configuration, shared by every target probed with it.
// The zero value of each field means its default.
type Module struct {
	Kind Kind `yaml:"kind" json:"kind"`

	// Timeout bounds the whole probe, retries included (default 2s).
	Timeout time.Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// DialTimeout, HandshakeTimeout and ResponseTimeout bound the phases
	// (TCP connect including DNS; TLS handshake; request written → response
	// headers). Each defaults to Timeout and never exceeds it.
	DialTimeout      time.Duration `yaml:"dial_timeout,omitempty" json:"dial_timeout,omitempty"`
	HandshakeTimeout time.Duration `yaml:"handshake_timeout,omitempty" json:"handshake_timeout,omitempty"`
	ResponseTimeout  time.Duration `yaml:"response_timeout,omitempty" json:"response_timeout,omitempty"`
	// Interval is how often the caller probes each target (default 10s). It
	// sizes idle-connection lifetimes (longer than the interval, so pooled
	// connections survive between probes) and TCP keepalive.
	Interval time.Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// StaleAfter is how long a probe waits for the first response byte on a
	// reused connection before it also tries a fresh connection in parallel
	// (first answer wins). Default Timeout/2; negative disables the parallel
	// attempt (a reused connection that fails outright is still retried once
	// on a fresh one).
	StaleAfter time.Duration `yaml:"stale_after,omitempty" json:"stale_after,omitempty"`

	// TLS configures the client side of TLS for https, grpc (when GRPC.TLS)
	// and tls probes.
	TLS TLSClientConfig `yaml:"tls,omitempty" json:"tls,omitempty"`
	// ExpiryWarning turns a certificate closer than this to expiry into
	// Degraded. Default 14 days for tls probes, off for the others; negative
	// disables it.
	ExpiryWarning time.Duration `yaml:"expiry_warning,omitempty" json:"expiry_warning,omitempty"`

	HTTP HTTPConfig `yaml:"http,omitempty" json:"http,omitempty"`
	GRPC GRPCConfig `yaml:"grpc,omitempty" json:"grpc,omitempty"`
	TCP  TCPConfig  `yaml:"tcp,omitempty" json:"tcp,omitempty"`
	UDP  UDPConfig  `yaml:"udp,omitempty" json:"udp,omitempty"`
	DNS  DNSConfig  `yaml:"dns,omitempty" json:"dns,omitempty"`

	// Conditions judge what the probe observed (see package condition).
	Conditions condition.Spec `yaml:"conditions,omitempty" json:"conditions,omitempty"`
}

// Result is the outcome of one probe: the status.Result the detector and
// verdict engine consume, plus what the dashboard and logs show.
type Result struct {
	status.Result
	Kind   Kind
	Target string
	// Peer is the remote address the answer came from (logs: peer_addr).
	Peer string
	// Start is the wall-clock start, for display and storage only.
	Start time.Time
	// Connected says a transport (TCP and, where used, TLS) to the target
	// was established; false means the failure was in DNS, connect or
	// handshake.
	Connected bool
	// Reused says the answer came over a pooled connection.
	Reused bool
	// Retried says a fresh-connection attempt was made because a pooled
	// connection failed or stayed silent.
	Retried bool
	// Handshakes counts the TLS handshakes this probe performed.
	Handshakes int
	// HTTPStatus is the HTTP status code (0 for other kinds).
	HTTPStatus int
	// GRPCStatus is the health service's answer: SERVING, NOT_SERVING,
	// SERVICE_UNKNOWN or UNKNOWN; empty when there was none.
	GRPCStatus string
	// Body is an excerpt (at most 512 bytes) of the body, reply or answers.
	Body string
	// TLSNotAfter is the peer certificate's expiry; zero without TLS.
	TLSNotAfter time.Time
	// TraceID and SpanID identify the probe's span when tracing is on.
	TraceID, SpanID string
}

// Prober probes targets with one module. Probe is safe for concurrent use;
// Close releases pooled connections and makes later probes fail fast.
type Prober interface {
	Probe(ctx context.Context, target string) Result
	Close() error
}

// Option configures a Prober.
type Option func(*options)

type options struct {
	tp     trace.TracerProvider
	clock  clock.Clock
	dial   DialFunc
	dnsRes *net.Resolver
	// handshakes caps TLS handshakes in flight; fresh caps fresh-connection
	// retries in flight.
	handshakes, fresh int
}

// Defaults for the concurrency caps.
const (
	DefaultMaxHandshakes = 256
	DefaultMaxFresh      = 64
)

// DialFunc opens a network connection; see WithDialer.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// WithTracerProvider sets where probe spans go (default
// otel.GetTracerProvider(), a no-op until the program installs an SDK).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tp = tp }
}

// WithClock sets the wall clock used for Result.Start, certificate expiry
// and the conditions' `now` (default clock.Real()). Network deadlines always
// use real time: the network is not fake.
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// WithDialer routes connections (an egress proxy, a zone-pinned source
// address, or a test's fault injector). It receives resolved "ip:port"
// addresses; DNS stays timed as its own phase.
func WithDialer(d DialFunc) Option { return func(o *options) { o.dial = d } }

// WithResolver sets the resolver for target host names (default
// net.DefaultResolver).
func WithResolver(r *net.Resolver) Option { return func(o *options) { o.dnsRes = r } }

// WithMaxHandshakes caps the TLS handshakes in flight (default 256). When
// thousands of targets need a connection at once (a cold start, a network
// blip), handshakes queue instead of all progressing slowly and all missing
// their deadline; a queued handshake still counts against the probe's
// deadline.
func WithMaxHandshakes(n int) Option { return func(o *options) { o.handshakes = n } }

// WithMaxFreshRetries caps the fresh-connection attempts (retries and
// parallel attempts after a silent pooled connection) in flight (default
// 64), so an overloaded network does not get a second wave of handshakes
// on top of the first.
func WithMaxFreshRetries(n int) Option { return func(o *options) { o.fresh = n } }

// New validates m and builds its prober. It starts no goroutine; network
// activity begins with the first Probe.
func New(m Module, opts ...Option) (Prober, error) {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.tp == nil {
		o.tp = otel.GetTracerProvider()
	}
	if o.handshakes <= 0 {
		o.handshakes = DefaultMaxHandshakes
	}
	if o.fresh <= 0 {
		o.fresh = DefaultMaxFresh
	}
	o.clock = clock.OrReal(o.clock)
	if err := m.normalize(); err != nil {
		return nil, err
	}
	b := newBase(m, o)
	switch m.Kind {
	case KindHTTP:
		return newHTTP(m, b)
	case KindGRPC:
		return newGRPC(m, b)
	case KindTCP:
		return newTCP(m, b)
	case KindTLS:
		return newTLSProber(m, b)
	case KindUDP:
		return newUDP(m, b)
	case KindDNS:
		return newDNS(m, b)
	}
	return nil, fmt.Errorf("probe: unknown kind %q (want http, grpc, tcp, tls, udp or dns)", m.Kind)
}

// Once probes target with m a single time: build, probe, close. It is the
// function-of-(ctx, target, module) form; a monitor probing repeatedly
// keeps a Prober instead so connections are reused.
func Once(ctx context.Context, target string, m Module, opts ...Option) Result {
	p, err := New(m, opts...)
	if err != nil {
		return failed(m.Kind, target, status.WithClass(status.ClassInternal, err), time.Now())
	}
	defer p.Close()
	return p.Probe(ctx, target)
}

// normalize applies defaults and rejects contradictions.
func (m *Module) normalize() error {
	var errs []error
	if m.Kind == "" {
		errs = append(errs, errors.New("kind is required (http, grpc, tcp, tls, udp or dns)"))
	}
	if m.Timeout < 0 || m.DialTimeout < 0 || m.HandshakeTimeout < 0 || m.ResponseTimeout < 0 || m.Interval < 0 {
		errs = append(errs, errors.New("timeouts and interval must not be negative"))
	}
	if m.Timeout == 0 {
		m.Timeout = DefaultTimeout
	}
	bound := func(d *time.Duration) {
		if *d == 0 || *d > m.Timeout {
			*d = m.Timeout
		}
	}
	bound(&m.DialTimeout)
	bound(&m.HandshakeTimeout)
	bound(&m.ResponseTimeout)
	if m.Interval == 0 {
		m.Interval = DefaultInterval
	}
	if m.StaleAfter == 0 {
		m.StaleAfter = m.Timeout / 2
	}
	if m.ExpiryWarning == 0 && m.Kind == KindTLS {
		m.ExpiryWarning = DefaultExpiryWarning
	}
	if len(errs) > 0 {
		return fmt.Errorf("probe: invalid module: %w", errors.Join(errs...))
	}
	return nil
}

// base is what every prober shares: clock, tracer, dialer, closing state.
type base struct {
	kind     Kind
	m        Module
	clock    clock.Clock
	tracer   trace.Tracer
	spanName string
	dialer   *dialer
	closed   atomic.Bool
	// closing is cancelled by Close so probes, dials and handshakes in
	// flight stop.
	closing context.Context
	cancel  context.CancelFunc
	// work counts probes and dials in flight; Close waits for them.
	work inflight
	// freshSlots bounds fresh-connection attempts in flight.
	freshSlots chan struct{}
}

func newBase(m Module, o options) *base {
	closing, cancel := context.WithCancel(context.Background())
	b := &base{
		freshSlots: make(chan struct{}, o.fresh),
		kind:       m.Kind,
		m:          m,
		clock:      o.clock,
		tracer:     o.tp.Tracer("github.com/fb4b1dcc/pulse/probe"),
		spanName:   "probe " + string(m.Kind),
		closing:    closing,
		cancel:     cancel,
	}
	b.dialer = newDialer(m, o, closing, &b.work)
	return b
}

// close marks the prober closed, cancels work in flight, waits for it to
// return and closes every connection the prober opened. It reports whether
// this call was the first.
func (b *base) close() bool {
	if !b.closed.CompareAndSwap(false, true) {
		return false
	}
	b.cancel()
	// Closing the connections first unblocks any I/O that ignores the
	// context; connections made while we wait are closed as they appear.
	b.dialer.closeAll()
	b.work.closeAndWait()
	return true
}

// begin admits one probe: it fails once the prober is closed, and binds ctx
// to the prober's lifetime and the module timeout. end must be called.
// run is the frame every prober shares: it refuses work after Close,
// bounds the probe by the module's timeout, opens the probe span (with its
// phase children) and fills latency and phases however body returns;
// start is the monotonic start, for bodies that judge latency.
func (b *base) run(ctx context.Context, kind Kind, target string, body func(ctx context.Context, rec *recorder, r *Result, start time.Time)) (r Result) {
	start := time.Now()
	r = Result{Kind: kind, Target: target, Start: b.clock.Now()}
	ctx, end, ok := b.begin(ctx)
	defer end()
	if !ok {
		r.fail(errClosed)
		return r
	}
	ctx, span := b.startSpan(ctx, target)
	rec := &recorder{}
	defer func() {
		r.Latency = time.Since(start)
		r.Phases = rec.phases()
		b.endSpan(ctx, span, &r, rec)
	}()
	body(ctx, rec, &r, start)
	return r
}

func (b *base) begin(ctx context.Context) (context.Context, func(), bool) {
	if !b.work.enter() {
		return ctx, func() {}, false
	}
	ctx, cancel := context.WithTimeout(ctx, b.m.Timeout)
	stop := context.AfterFunc(b.closing, cancel)
	return ctx, func() { stop(); cancel(); b.work.leave() }, true
}

// tryFresh takes a fresh-attempt slot if one is free; release must follow.
func (b *base) tryFresh() (release func(), ok bool) {
	select {
	case b.freshSlots <- struct{}{}:
		return func() { <-b.freshSlots }, true
	default:
		return nil, false
	}
}

// inflight counts work in flight and refuses new work once closed.
type inflight struct {
	mu     sync.Mutex
	n      int
	closed bool
	zero   chan struct{}
}

func (t *inflight) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.n++
	return true
}

func (t *inflight) leave() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 && t.zero != nil {
		close(t.zero)
		t.zero = nil
	}
}

func (t *inflight) closeAndWait() {
	t.mu.Lock()
	t.closed = true
	if t.n == 0 {
		t.mu.Unlock()
		return
	}
	z := make(chan struct{})
	t.zero = z
	t.mu.Unlock()
	<-z
}

var errClosed = status.Errorf(status.ClassInternal, "probe: prober is closed")

// failed builds an Unhealthy result for err.
func failed(kind Kind, target string, err error, start time.Time) Result {
	r := Result{Kind: kind, Target: target, Start: start}
	r.fail(err)
	return r
}

// fail marks r Unhealthy because of err.
func (r *Result) fail(err error) {
	r.Status = status.Unhealthy
	r.Err = err
	r.Class = status.Classify(err)
	if r.Class == status.ClassNone {
		r.Class = status.ClassOther
	}
	r.Reason = err.Error()
}

// judge applies a condition verdict to r.
func (r *Result) judge(v condition.Verdict) {
	r.Status = v.Status
	r.Class = v.Class
	r.Err = v.Err
	if v.Reason != "" {
		r.Reason = v.Reason
	}
}

// excerptOf returns at most excerptLimit bytes of b as valid UTF-8.
func excerptOf(b []byte) string {
	if len(b) > excerptLimit {
		b = b[:excerptLimit]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// compileConditions compiles the module's conditions; defaults apply when
// the spec has none.
func compileConditions(spec condition.Spec, defaults ...string) (*condition.Set, error) {
	set, err := condition.Compile(spec, condition.WithDefaultHealthy(defaults...))
	if err != nil {
		return nil, fmt.Errorf("probe: conditions: %w", err)
	}
	return set, nil
}

// hostPort splits a target ("host:port", optionally scheme://host:port/)
// into host and port; defPort applies when the target has none.
func hostPort(target string, defPort string) (host, port string, err error) {
	t := target
	if i := strings.Index(t, "://"); i >= 0 {
		t = t[i+3:]
	}
	t = strings.TrimSuffix(t, "/")
	host, port, err = net.SplitHostPort(t)
	if err != nil {
		if defPort == "" {
			return "", "", fmt.Errorf("target %q: want host:port", target)
		}
		host, port, err = net.SplitHostPort(net.JoinHostPort(strings.Trim(t, "[]"), defPort))
		if err != nil {
			return "", "", fmt.Errorf("target %q: %w", target, err)
		}
	}
	if host == "" {
		return "", "", fmt.Errorf("target %q: missing host", target)
	}
	return host, port, nil
}
