package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/fb4b1dcc/pulse/condition"
	"github.com/fb4b1dcc/pulse/status"
)

// HTTPConfig is the http prober's part of a module.
type HTTPConfig struct {
	// Method defaults to GET.
	Method string `yaml:"method,omitempty" json:"method,omitempty"`
	// Headers are added to every request; "Host" sets the request's Host.
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Body is sent with every request.
	Body string `yaml:"body,omitempty" json:"body,omitempty"`
	// FollowRedirects follows up to MaxRedirects (default 5) redirects.
	// Off by default: a health endpoint that redirects (to a login page,
	// say) must not look healthy because the page it points at is.
	FollowRedirects bool `yaml:"follow_redirects,omitempty" json:"follow_redirects,omitempty"`
	MaxRedirects    int  `yaml:"max_redirects,omitempty" json:"max_redirects,omitempty"`
	// BodyLimit caps how much of the body is read (default 64 KiB). A
	// longer body is cut, and JSON conditions on it fail with that reason.
	BodyLimit int64 `yaml:"body_limit,omitempty" json:"body_limit,omitempty"`
	// DisableHTTP2 keeps HTTPS probes on HTTP/1.1.
	DisableHTTP2 bool `yaml:"disable_http2,omitempty" json:"disable_http2,omitempty"`
}

// defaultHTTPHealthy is the success test when the module's conditions say
// nothing about the status code.
const defaultHTTPHealthy = "status >= 200 && status < 300"

type httpProber struct {
	*base
	cfg    HTTPConfig
	conds  *condition.Set
	tlsCfg *tls.Config
	// pooled keeps connections between probes; fresh never reuses one and
	// serves the retry after a pooled connection failed or went silent.
	pooled, fresh *http.Transport
	pooledC       *http.Client
	freshC        *http.Client
	bufs          sync.Pool
}

func newHTTP(m Module, b *base) (*httpProber, error) {
	cfg := m.HTTP
	if cfg.Method == "" {
		cfg.Method = http.MethodGet
	}
	if cfg.BodyLimit == 0 {
		cfg.BodyLimit = DefaultBodyLimit
	}
	if cfg.BodyLimit < 0 {
		return nil, errors.New("probe: http.body_limit must be positive")
	}
	if cfg.FollowRedirects && cfg.MaxRedirects == 0 {
		cfg.MaxRedirects = 5
	}
	conds, err := httpConditions(m.Conditions)
	if err != nil {
		return nil, err
	}
	alpn := []string{"h2", "http/1.1"}
	if cfg.DisableHTTP2 {
		alpn = []string{"http/1.1"}
	}
	tlsCfg, err := m.TLS.build(alpn...)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	p := &httpProber{base: b, cfg: cfg, conds: conds, tlsCfg: tlsCfg}
	limit := cfg.BodyLimit
	p.bufs.New = func() any { b := make([]byte, limit+1); return &b }

	// Idle connections outlive the interval so the next probe finds them.
	idle := max(2*m.Interval+m.Timeout, 90*time.Second)
	p.pooled = &http.Transport{
		Proxy:               nil, // probes go straight to the target
		DialContext:         p.dialPlain,
		DialTLSContext:      p.dialTLS,
		TLSClientConfig:     tlsCfg,
		ForceAttemptHTTP2:   !cfg.DisableHTTP2,
		MaxIdleConns:        0, // no global cap: one idle connection per target is the point
		MaxIdleConnsPerHost: 2,
		// Probes of one target do not overlap; while a connection is being
		// made, later probes wait for it instead of dialing again (a slow
		// network would otherwise pile up a dial per probe per target).
		MaxConnsPerHost:        2,
		IdleConnTimeout:        idle,
		ResponseHeaderTimeout:  m.ResponseTimeout,
		TLSHandshakeTimeout:    m.HandshakeTimeout,
		DisableCompression:     true, // judge the bytes on the wire; no gzip CPU per probe
		MaxResponseHeaderBytes: 64 << 10,
		HTTP2: &http.HTTP2Config{
			// A silent HTTP/2 connection is pinged and dropped when the
			// ping goes unanswered. This is the backstop between probes
			// (a probe on a dead connection is rescued by the fresh
			// attempt), so it is lenient: dropping live connections of a
			// slow, overloaded peer would add handshakes to its load.
			SendPingTimeout: max(2*m.Interval, m.Timeout, 15*time.Second),
			PingTimeout:     max(2*m.Timeout, 5*time.Second),
		},
	}
	if cfg.DisableHTTP2 {
		p.pooled.Protocols = new(http.Protocols)
		p.pooled.Protocols.SetHTTP1(true)
	}
	p.fresh = p.pooled.Clone()
	p.fresh.DisableKeepAlives = true

	redirect := func(req *http.Request, via []*http.Request) error {
		if !cfg.FollowRedirects {
			return http.ErrUseLastResponse
		}
		if len(via) > cfg.MaxRedirects {
			return status.Errorf(status.ClassProtocol, "stopped after %d redirects", cfg.MaxRedirects)
		}
		return nil
	}
	p.pooledC = &http.Client{Transport: p.pooled, CheckRedirect: redirect}
	p.freshC = &http.Client{Transport: p.fresh, CheckRedirect: redirect}
	return p, nil
}

// httpConditions compiles the module's conditions; unless they test the
// status code themselves, a 2xx status is required as well.
func httpConditions(spec condition.Spec) (*condition.Set, error) {
	set, err := compileConditions(spec, defaultHTTPHealthy)
	if err != nil {
		return nil, err
	}
	hasStatus := spec.Expect != nil && spec.Expect.Status != 0
	for _, e := range spec.Healthy {
		if mentions(e, "status") {
			hasStatus = true
		}
	}
	if hasStatus || (len(spec.Healthy) == 0 && spec.Expect == nil) {
		return set, nil
	}
	spec.Healthy = append([]string{defaultHTTPHealthy}, spec.Healthy...)
	return compileConditions(spec)
}

// mentions reports whether CEL text uses identifier name (a lexical test is
// enough: a false positive only drops the implicit 2xx check).
func mentions(expr, name string) bool {
	for i := 0; ; {
		j := strings.Index(expr[i:], name)
		if j < 0 {
			return false
		}
		j += i
		before := j == 0 || !isIdent(expr[j-1]) && expr[j-1] != '.'
		after := j+len(name) == len(expr) || !isIdent(expr[j+len(name)])
		if before && after {
			return true
		}
		i = j + len(name)
	}
}

func isIdent(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func (p *httpProber) dialPlain(ctx context.Context, network, addr string) (net.Conn, error) {
	rec := recorderFrom(ctx)
	c, err := p.dialer.dial(ctx, network, addr, rec)
	if err == nil {
		rec.set(func(r *recorder) { r.connected = true })
	}
	return c, err
}

func (p *httpProber) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	rec := recorderFrom(ctx)
	c, err := p.dialer.dial(ctx, network, addr, rec)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	return p.dialer.handshake(ctx, c, forHost(p.tlsCfg, host), rec)
}

// httpAttempt is one request on one connection.
type httpAttempt struct {
	rec       *recorder
	resp      *http.Response
	body      *[]byte // pooled buffer; body bytes are (*body)[:n]
	n         int
	truncated bool
	err       error
}

func (a *httpAttempt) ok() bool { return a.err == nil }

// discard closes the pooled connection the attempt went silent on; for
// HTTP/2 this is what takes it out of the transport's pool.
func (a *httpAttempt) discard() {
	a.rec.mu.Lock()
	c := a.rec.conn
	a.rec.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

func (a *httpAttempt) staleFailure() bool {
	a.rec.mu.Lock()
	defer a.rec.mu.Unlock()
	return a.err != nil && a.rec.reused && a.rec.firstByte.IsZero()
}

// Probe sends one request to target (an http:// or https:// URL) and judges
// the answer.
func (p *httpProber) Probe(ctx context.Context, target string) Result {
	start := time.Now()
	r := Result{Kind: KindHTTP, Target: target, Start: p.clock.Now()}
	ctx, end, ok := p.begin(ctx)
	defer end()
	if !ok {
		r.fail(errClosed)
		return r
	}
	ctx, span := p.startSpan(ctx, target)
	if !validURL(target) {
		r.fail(status.Errorf(status.ClassOther, "target %q is not an http:// or https:// URL", target))
		r.Latency = time.Since(start)
		p.endSpan(ctx, span, &r)
		return r
	}
	u := target

	rec1, rec2 := &recorder{}, &recorder{}
	first := func(ctx context.Context) *httpAttempt { return p.attempt(ctx, u, p.pooledC, rec1) }
	fresh := func(ctx context.Context) *httpAttempt { return p.attempt(ctx, u, p.freshC, rec2) }
	suspect := func() bool {
		rec1.mu.Lock()
		defer rec1.mu.Unlock()
		return rec1.reused && rec1.firstByte.IsZero()
	}
	a, retried := withFreshRetry(ctx, p.base, suspect, first, fresh)
	r.Latency = time.Since(start)
	p.finish(ctx, &r, a, retried)
	for _, x := range []*recorder{rec1, rec2} {
		x.mu.Lock()
		r.Handshakes += x.handshakes
		x.mu.Unlock()
	}
	if a.body != nil {
		p.bufs.Put(a.body)
	}
	if !retried {
		rec2 = nil
	}
	p.endSpan(ctx, span, &r, rec1, rec2)
	return r
}

// validURL checks the target's form without a full parse (the request
// parses it once more anyway).
func validURL(target string) bool {
	rest, ok := strings.CutPrefix(target, "https://")
	if !ok {
		rest, ok = strings.CutPrefix(target, "http://")
	}
	if !ok || rest == "" || rest[0] == '/' {
		return false
	}
	_, err := url.Parse(target)
	return err == nil
}

// finish fills r from the winning attempt and judges it.
func (p *httpProber) finish(ctx context.Context, r *Result, a *httpAttempt, retried bool) {
	r.Retried = retried
	r.Phases = a.rec.phases()
	a.rec.mu.Lock()
	r.Connected, r.Reused, r.Peer = a.rec.connected, a.rec.reused, a.rec.peer
	a.rec.mu.Unlock()
	if a.err != nil {
		r.fail(a.err)
		return
	}
	resp := a.resp
	body := (*a.body)[:a.n]
	r.HTTPStatus = resp.StatusCode
	r.Body = excerptOf(body)
	var info *condition.TLS
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		r.TLSNotAfter = resp.TLS.PeerCertificates[0].NotAfter
		if p.conds.Reads("tls") || p.m.ExpiryWarning > 0 {
			info = tlsInfo(resp.TLS) // names are formatted only when read
		}
	}
	now := p.clock.Now()
	v := p.conds.Eval(context.WithoutCancel(ctx), &condition.Input{
		Status:        resp.StatusCode,
		Headers:       resp.Header,
		Body:          body,
		BodyTruncated: a.truncated,
		Latency:       r.Latency,
		TLS:           info,
		Now:           now,
	})
	r.Reason = fmt.Sprintf("HTTP %d", resp.StatusCode)
	r.judge(v)
	if r.Status == status.Healthy && p.m.ExpiryWarning > 0 {
		if deg, exp, why := expiry(info, now, p.m.ExpiryWarning); deg || exp {
			r.Status, r.Class, r.Reason = status.Degraded, status.ClassTLS, why
			if exp {
				r.fail(status.Errorf(status.ClassTLS, "%s", why))
			}
		}
	}
}

// attempt runs one request through client and reads the body.
func (p *httpProber) attempt(ctx context.Context, u string, client *http.Client, rec *recorder) *httpAttempt {
	a := &httpAttempt{rec: rec}
	ct := &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			rec.set(func(r *recorder) {
				r.connected = true
				r.reused = info.Reused
				r.conn = info.Conn
				r.gotConn = time.Now()
				if info.Conn != nil {
					r.peer = info.Conn.RemoteAddr().String()
				}
			})
		},
		// TTFB starts when the request is out. HTTP/2 may report the first
		// response byte before it reports the request written, so the
		// headers going out start the clock and a later "written" only
		// moves it while no answer has arrived.
		WroteHeaders: func() {
			rec.set(func(r *recorder) {
				if r.wrote.IsZero() {
					r.wrote = time.Now()
				}
			})
		},
		WroteRequest: func(httptrace.WroteRequestInfo) {
			rec.set(func(r *recorder) {
				if r.firstByte.IsZero() {
					r.wrote = time.Now()
				}
			})
		},
		GotFirstResponseByte: func() { rec.mark(&rec.firstByte) },
	}
	rctx := withRecorder(httptrace.WithClientTrace(ctx, ct), rec)
	var body io.Reader
	if p.cfg.Body != "" {
		body = strings.NewReader(p.cfg.Body)
	}
	req, err := http.NewRequestWithContext(rctx, p.cfg.Method, u, body)
	if err != nil {
		a.err = status.Errorf(status.ClassOther, "build request: %w", err)
		return a
	}
	req.Header.Set("User-Agent", "pulse-probe/1")
	for k, v := range p.cfg.Headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	traceContext.Inject(ctx, propagation.HeaderCarrier(req.Header))

	resp, err := client.Do(req)
	if err != nil {
		a.err = p.explain(ctx, err, rec)
		return a
	}
	defer resp.Body.Close()
	a.resp = resp
	a.body = p.bufs.Get().(*[]byte)
	buf := *a.body
	n, err := io.ReadFull(resp.Body, buf)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		err = nil
	case err == nil: // the buffer is limit+1 bytes: the body is longer than the limit
		a.truncated = true
		n--
	}
	a.n = n
	rec.mark(&rec.end)
	if err != nil {
		a.err = p.explain(ctx, fmt.Errorf("reading the body: %w", err), rec)
	}
	return a
}

// explain turns a transport error into a classified one that says which
// phase failed.
func (p *httpProber) explain(ctx context.Context, err error, rec *recorder) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var se *status.Error
	if errors.As(err, &se) && se.Class != status.ClassNone && !errors.Is(err, context.DeadlineExceeded) {
		return err // already classified by the dialer or redirect policy
	}
	stage := rec.stage()
	rec.mu.Lock()
	dialErr := rec.dialErr
	rec.mu.Unlock()
	if p.closed.Load() {
		return errClosed
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		strings.Contains(err.Error(), "timeout awaiting response headers") {
		msg := fmt.Sprintf("timeout during %s", stage)
		if dialErr != nil && stage != "TLS handshake" && stage != "TCP connect" {
			msg += " (" + dialErr.Error() + ")"
		}
		return status.Errorf(status.ClassTimeout, "%s: %w", msg, context.DeadlineExceeded)
	}
	if dialErr != nil {
		return dialErr
	}
	cls := status.Classify(err)
	if cls == status.ClassOther {
		rec.mu.Lock()
		connected := rec.connected
		rec.mu.Unlock()
		if connected {
			cls = status.ClassProtocol // it answered something HTTP could not accept
		}
	}
	return status.WithClass(cls, fmt.Errorf("%s: %w", stage, err))
}

// Close releases pooled connections. In-flight probes are cancelled.
func (p *httpProber) Close() error {
	if p.close() {
		p.pooled.CloseIdleConnections()
		p.fresh.CloseIdleConnections()
	}
	return nil
}
