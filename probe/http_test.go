package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/fb4b1dcc/pulse/condition"
	"github.com/fb4b1dcc/pulse/internal/faultnet/toxi"
	"github.com/fb4b1dcc/pulse/status"
)

// businessModule is the AP-08 module: HTTP 200 with code 0 is healthy, code
// 503 is degraded with the body's message as reason.
func businessModule(p *pki) Module {
	return Module{
		Kind:    KindHTTP,
		Timeout: 2 * time.Second,
		TLS:     TLSClientConfig{CAPEM: p.caPEM},
		Conditions: condition.Spec{
			Expect:   &condition.Expect{Status: 200, JSON: map[string]any{"code": 0}},
			Degraded: []condition.Rule{{When: "json.code == 503", Reason: "json.msg"}},
		},
	}
}

// TestHTTPBusinessVerdicts: the body's business code decides, on the first
// probe, over real HTTPS.
func TestHTTPBusinessVerdicts(t *testing.T) {
	p := newPKI(t)
	var body atomic.Value
	srv := newTLSServer(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body.Load().(string))
	}), true)

	cases := []struct {
		body   string
		want   status.Status
		class  status.ErrorClass
		reason string
	}{
		{`{"code":503,"msg":"service degraded"}`, status.Degraded, status.ClassCondition, "service degraded"},
		{`{"code":0}`, status.Healthy, "", "HTTP 200"},
		{`<html>maintenance</html>`, status.Unhealthy, status.ClassProtocol,
			`condition json.code == 0 needs a JSON body: invalid character '<' looking for beginning of value (body starts "<html>maintenance</html>")`},
		{`{"code":7}`, status.Unhealthy, status.ClassCondition, "condition json.code == 0 failed: code=7"},
	}
	for _, c := range cases {
		t.Run(c.body, func(t *testing.T) {
			body.Store(c.body)
			// A new prober each time: the verdict must hold on the very
			// first probe.
			pr := mustNew(t, businessModule(p))
			r := pr.Probe(context.Background(), srv.URL+"/healthz")
			if r.Status != c.want || r.Class != c.class || r.Reason != c.reason {
				t.Fatalf("got %v/%q/%q, want %v/%q/%q", r.Status, r.Class, r.Reason, c.want, c.class, c.reason)
			}
			if r.HTTPStatus != 200 || r.Body != c.body || !r.Connected || r.Reused {
				t.Fatalf("result fields: %+v", r)
			}
			if r.Phases.Connect <= 0 || r.Phases.TLS <= 0 || r.Phases.TTFB <= 0 || r.Handshakes != 1 {
				t.Fatalf("first probe must show connect, TLS and TTFB phases: %+v handshakes %d", r.Phases, r.Handshakes)
			}
			if r.TLSNotAfter.Before(time.Now().Add(80 * 24 * time.Hour)) {
				t.Fatalf("TLS not-after %v", r.TLSNotAfter)
			}
			if (r.Err == nil) != (c.want != status.Unhealthy) {
				t.Fatalf("Err %v with status %v", r.Err, r.Status)
			}
		})
	}
}

// TestHTTPSPooling: 1,000 probes of one HTTPS target open at most 2 TLS
// connections, counted on the server (AP-05).
func TestHTTPSPooling(t *testing.T) {
	p := newPKI(t)
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			srv := newTLSServer(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"code":0}`)
			}), h2)
			m := businessModule(p)
			m.HTTP.DisableHTTP2 = !h2
			m.Interval = time.Second
			pr := mustNew(t, m)
			handshakes, reused := 0, 0
			for i := range 1000 {
				r := pr.Probe(context.Background(), srv.URL)
				if r.Status != status.Healthy {
					t.Fatalf("probe %d: %v %q", i, r.Status, r.Reason)
				}
				handshakes += r.Handshakes
				if r.Reused {
					reused++
					if r.Phases.TLS != 0 || r.Phases.Connect != 0 {
						t.Fatalf("reused connection reports dial phases: %+v", r.Phases)
					}
				}
			}
			if n := srv.handshakes.Load(); n > 2 || n < 1 {
				t.Fatalf("server saw %d TLS handshakes for 1,000 probes, want ≤ 2", n)
			}
			if n := srv.conns.Load(); n > 2 {
				t.Fatalf("server saw %d TCP connections, want ≤ 2", n)
			}
			if int64(handshakes) != srv.handshakes.Load() || reused < 998 {
				t.Fatalf("client counted %d handshakes (server %d), %d reused", handshakes, srv.handshakes.Load(), reused)
			}
		})
	}
}

// TestHTTPTLSDelayIsTLSPhase: a 300 ms stall before the server answers the
// ClientHello shows in the TLS phase (and its span), not in TTFB; the
// server receives the probe's traceparent.
func TestHTTPTLSDelayIsTLSPhase(t *testing.T) {
	p := newPKI(t)
	var gotParent atomic.Value
	srv := newTLSServer(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotParent.Store(r.Header.Get("Traceparent"))
		io.WriteString(w, `{"code":0}`)
	}), true)
	srv.delay.Store(int64(300 * time.Millisecond))

	sr := tracetest.NewSpanRecorder()
	tp := trace.NewTracerProvider(trace.WithSpanProcessor(sr))
	defer tp.Shutdown(context.Background())
	pr := mustNew(t, businessModule(p), WithTracerProvider(tp))
	r := pr.Probe(context.Background(), srv.URL)
	if r.Status != status.Healthy {
		t.Fatalf("%v %q", r.Status, r.Reason)
	}
	if r.Phases.TLS < 300*time.Millisecond {
		t.Fatalf("TLS phase %v, want ≥ 300ms", r.Phases.TLS)
	}
	if r.Phases.TTFB > 100*time.Millisecond {
		t.Fatalf("TTFB %v absorbed the handshake delay", r.Phases.TTFB)
	}

	spans := sr.Ended()
	var root, tlsSpan, ttfb *tracetest.SpanStub
	for _, s := range tracetest.SpanStubsFromReadOnlySpans(spans) {
		switch s.Name {
		case "probe http":
			root = &s
		case "tls":
			tlsSpan = &s
		case "ttfb":
			ttfb = &s
		}
	}
	if root == nil || tlsSpan == nil || ttfb == nil {
		t.Fatalf("want probe, tls and ttfb spans, got %d spans", len(spans))
	}
	if tlsSpan.Parent.SpanID() != root.SpanContext.SpanID() || tlsSpan.SpanContext.TraceID() != root.SpanContext.TraceID() {
		t.Fatal("tls span is not a child of the probe span")
	}
	if d := tlsSpan.EndTime.Sub(tlsSpan.StartTime); d < 300*time.Millisecond {
		t.Fatalf("tls span lasts %v", d)
	}
	if d := ttfb.EndTime.Sub(ttfb.StartTime); d > 100*time.Millisecond {
		t.Fatalf("ttfb span lasts %v", d)
	}
	want := fmt.Sprintf("00-%s-%s-01", root.SpanContext.TraceID(), root.SpanContext.SpanID())
	if got, _ := gotParent.Load().(string); got != want {
		t.Fatalf("server got traceparent %q, want %q", got, want)
	}
	if r.TraceID != root.SpanContext.TraceID().String() {
		t.Fatalf("result trace id %q", r.TraceID)
	}
}

// TestSilentServerTimeouts: a server that accepts TCP and never speaks
// fails HTTPS, gRPC-TLS and TLS probes within timeout + 10 % (AP-11); a
// thousand in parallel leave no goroutine behind once the prober closes.
func TestSilentServerTimeouts(t *testing.T) {
	const timeout = time.Second
	for _, kind := range []Kind{KindHTTP, KindGRPC, KindTLS} {
		t.Run(string(kind), func(t *testing.T) {
			silent := newSilentListener(t)
			m := Module{Kind: kind, Timeout: timeout, TLS: TLSClientConfig{InsecureSkipVerify: true}, GRPC: GRPCConfig{TLS: true}}
			target := silent.Addr()
			if kind == KindHTTP {
				target = "https://" + target + "/healthz"
			}
			pr, err := New(m)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			r := pr.Probe(context.Background(), target)
			took := time.Since(start)
			if r.Status != status.Unhealthy || r.Class != status.ClassTimeout || r.Connected {
				t.Fatalf("got %v/%q connected=%v: %s", r.Status, r.Class, r.Connected, r.Reason)
			}
			if took > timeout+timeout/10 {
				t.Fatalf("took %v, want ≤ %v", took, timeout+timeout/10)
			}
			if kind != KindGRPC && !strings.Contains(r.Reason, "TLS handshake") {
				t.Fatalf("reason should name the TLS handshake: %q", r.Reason)
			}
			if r.Latency < timeout-10*time.Millisecond {
				t.Fatalf("latency %v shorter than the timeout", r.Latency)
			}

			var wg sync.WaitGroup
			var bad atomic.Int64
			for range 1000 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := pr.Probe(context.Background(), target)
					if r.Status != status.Unhealthy || r.Class != status.ClassTimeout {
						bad.Add(1)
					}
				}()
			}
			wg.Wait()
			if n := bad.Load(); n != 0 {
				t.Fatalf("%d of 1000 parallel probes did not time out", n)
			}
			closeStart := time.Now()
			if err := pr.Close(); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(closeStart); took > timeout/2 {
				t.Fatalf("Close took %v: it must cancel work in flight, not wait it out", took)
			}
			silent.Close()
			goleak.VerifyNone(t, goleak.IgnoreCurrent())
		})
	}
}

// TestBlackholedPooledConnection: toxiproxy silently drops everything on the
// pooled connection; the next probe answers on a fresh connection within
// one timeout (AP-07). Dials after the first bypass the proxy, so only the
// pooled connection is black-holed, as when a NAT entry or a peer's
// connection state dies.
func TestBlackholedPooledConnection(t *testing.T) {
	p := newPKI(t)
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2=%v", h2), func(t *testing.T) {
			srv := newTLSServer(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"code":0}`)
			}), h2)
			upstream := srv.Listener.Addr().String()
			proxy, err := toxi.New(upstream)
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			_, proxyPort, _ := net.SplitHostPort(proxy.Addr())

			var dials atomic.Int64
			route := func(ctx context.Context, network, addr string) (net.Conn, error) {
				var d net.Dialer
				if dials.Add(1) == 1 {
					return d.DialContext(ctx, network, proxy.Addr())
				}
				return d.DialContext(ctx, network, upstream)
			}
			m := businessModule(p)
			m.Timeout = time.Second
			m.HTTP.DisableHTTP2 = !h2
			pr := mustNew(t, m, WithDialer(route))
			target := "https://127.0.0.1:" + proxyPort + "/healthz"

			if r := pr.Probe(context.Background(), target); r.Status != status.Healthy || r.Handshakes != 1 {
				t.Fatalf("warm-up: %v %q", r.Status, r.Reason)
			}
			if r := pr.Probe(context.Background(), target); !r.Reused {
				t.Fatal("second probe did not reuse the pooled connection")
			}
			if err := proxy.Blackhole(); err != nil {
				t.Fatal(err)
			}
			r := pr.Probe(context.Background(), target)
			if r.Status != status.Healthy || !r.Retried || r.Reused || r.Handshakes != 1 {
				t.Fatalf("after blackhole: %v %q retried=%v reused=%v handshakes=%d", r.Status, r.Reason, r.Retried, r.Reused, r.Handshakes)
			}
			if r.Latency >= m.Timeout {
				t.Fatalf("took %v, want < one timeout (%v)", r.Latency, m.Timeout)
			}
			if got := srv.handshakes.Load(); got != 2 {
				t.Fatalf("server saw %d handshakes, want 2 (the original and the fresh one)", got)
			}
			// The dead connection left the pool: the next probe dials once
			// more, and the ones after reuse that connection.
			for i := range 5 {
				r := pr.Probe(context.Background(), target)
				if r.Status != status.Healthy || r.Retried || r.Reused != (i > 0) {
					t.Fatalf("after recovery %d: %v retried=%v reused=%v %q", i, r.Status, r.Retried, r.Reused, r.Reason)
				}
			}
			if got := srv.handshakes.Load(); got != 3 {
				t.Fatalf("server saw %d handshakes after recovery, want 3", got)
			}
		})
	}
}

// TestResetPooledConnectionRetried: a non-idempotent probe (POST) whose
// pooled connection is reset before any response byte is retried at once on
// a fresh connection (net/http itself only retries idempotent requests).
func TestResetPooledConnectionRetried(t *testing.T) {
	p := newPKI(t)
	var posts atomic.Int64
	srv := newTLSServer(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		io.WriteString(w, `{"code":0}`)
	}), false)
	upstream := srv.Listener.Addr().String()
	proxy, err := toxi.New(upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	var dials atomic.Int64
	route := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		if dials.Add(1) == 1 {
			return d.DialContext(ctx, network, proxy.Addr())
		}
		return d.DialContext(ctx, network, upstream)
	}
	m := businessModule(p)
	m.HTTP.Method = http.MethodPost
	m.HTTP.Body = `{"probe":true}`
	m.HTTP.DisableHTTP2 = true
	m.StaleAfter = -1 // only the immediate retry
	pr := mustNew(t, m, WithDialer(route))
	target := "https://" + proxy.Addr() + "/healthz"
	if r := pr.Probe(context.Background(), target); r.Status != status.Healthy {
		t.Fatalf("warm-up: %v %q", r.Status, r.Reason)
	}
	if err := proxy.ResetPeer(0); err != nil {
		t.Fatal(err)
	}
	r := pr.Probe(context.Background(), target)
	if r.Status != status.Healthy || !r.Retried || r.Handshakes != 1 {
		t.Fatalf("after reset: %v %q retried=%v handshakes=%d", r.Status, r.Reason, r.Retried, r.Handshakes)
	}
	if r.Latency > 500*time.Millisecond {
		t.Fatalf("retry was not immediate: %v", r.Latency)
	}
}

// TestHTTPFailures: each failure has its class, a reason naming the phase,
// and Connected set only once a transport existed.
func TestHTTPFailures(t *testing.T) {
	p := newPKI(t)
	ok := newTLSServer(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/healthz", http.StatusFound)
		case "/big":
			io.WriteString(w, `{"code":0,"pad":"`+strings.Repeat("x", 100)+`"}`)
		case "/slow":
			time.Sleep(400 * time.Millisecond)
		case "/mtls":
			if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			io.WriteString(w, `{"code":0,"cn":"`+r.TLS.PeerCertificates[0].Subject.CommonName+`"}`)
		default:
			io.WriteString(w, `{"code":0}`)
		}
	}), true)
	closedAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr().String()
		ln.Close()
		return a
	}()
	other := newPKI(t) // a CA that did not sign the server's certificate
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer plain.Close()

	base := businessModule(p)
	cases := []struct {
		name      string
		mod       func(m *Module)
		target    string
		want      status.Status
		class     status.ErrorClass
		connected bool
		reason    string
	}{
		{"refused", nil, "https://" + closedAddr, status.Unhealthy, status.ClassRefused, false, "connect to"},
		{"unknown CA", func(m *Module) { m.TLS.CAPEM = other.caPEM }, ok.URL, status.Unhealthy, status.ClassTLS, false, "certificate signed by unknown authority"},
		{"insecure opt-in", func(m *Module) { m.TLS = TLSClientConfig{InsecureSkipVerify: true} }, ok.URL, status.Healthy, "", true, "HTTP 200"},
		{"wrong SNI", func(m *Module) { m.TLS.ServerName = "other.example" }, ok.URL, status.Unhealthy, status.ClassTLS, false, "other.example"},
		{"redirect not followed", nil, ok.URL + "/redirect", status.Unhealthy, status.ClassCondition, true, "status=302"},
		{"redirect followed", func(m *Module) { m.HTTP.FollowRedirects = true }, ok.URL + "/redirect", status.Healthy, "", true, "HTTP 200"},
		{"body limit", func(m *Module) { m.HTTP.BodyLimit = 64 }, ok.URL + "/big", status.Unhealthy, status.ClassProtocol, true, "read limit"},
		{"response timeout", func(m *Module) { m.ResponseTimeout = 150 * time.Millisecond }, ok.URL + "/slow", status.Unhealthy, status.ClassTimeout, true, "timeout during waiting for the response"},
		{"mtls", func(m *Module) {
			_, c, k := p.issue(t, "prober", true, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
			m.TLS.CertPEM, m.TLS.KeyPEM = c, k
			m.Conditions.Healthy = []string{`json.cn == "prober"`}
		}, ok.URL + "/mtls", status.Healthy, "", true, "HTTP 200"},
		{"mtls missing", nil, ok.URL + "/mtls", status.Unhealthy, status.ClassCondition, true, "status=403"},
		{"plain http", func(m *Module) { m.Conditions = condition.Spec{Healthy: []string{`body == "ok"`}} }, plain.URL, status.Healthy, "", true, "HTTP 200"},
		{"not a URL", nil, "ftp://x", status.Unhealthy, status.ClassOther, false, "not an http:// or https:// URL"},
		{"dns", func(m *Module) {}, "https://no-such-host.pulse.test/healthz", status.Unhealthy, status.ClassDNS, false, "resolve no-such-host.pulse.test"},
	}
	dns := newDNSServer(t, map[string]string{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := base
			if c.mod != nil {
				c.mod(&m)
			}
			pr := mustNew(t, m, WithResolver(dns.resolver()))
			r := pr.Probe(context.Background(), c.target)
			if r.Status != c.want || r.Class != c.class || r.Connected != c.connected || !strings.Contains(r.Reason, c.reason) {
				t.Fatalf("got %v/%q connected=%v %q; want %v/%q connected=%v ~%q",
					r.Status, r.Class, r.Connected, r.Reason, c.want, c.class, c.connected, c.reason)
			}
			if c.want == status.Unhealthy && status.Classify(r.Err) != c.class {
				t.Fatalf("Err class %q, want %q (%v)", status.Classify(r.Err), c.class, r.Err)
			}
		})
	}
}

// TestHTTPDefaultStatusCheck: conditions that do not mention the status
// still require a 2xx; conditions that do take charge of it.
func TestHTTPDefaultStatusCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"code":0}`)
	}))
	defer srv.Close()
	for _, c := range []struct {
		healthy []string
		want    status.Status
	}{
		{[]string{"json.code == 0"}, status.Unhealthy},
		{[]string{"status == 503 && json.code == 0"}, status.Healthy},
		{nil, status.Unhealthy},
	} {
		r := Once(context.Background(), srv.URL, Module{Kind: KindHTTP, Conditions: condition.Spec{Healthy: c.healthy}})
		if r.Status != c.want {
			t.Fatalf("%q: got %v %q", c.healthy, r.Status, r.Reason)
		}
	}
}

func TestCloseAndInvalidModules(t *testing.T) {
	pr, err := New(Module{Kind: KindHTTP})
	if err != nil {
		t.Fatal(err)
	}
	pr.Close()
	pr.Close() // idempotent
	r := pr.Probe(context.Background(), "http://127.0.0.1:1/")
	if r.Status != status.Unhealthy || !errors.Is(r.Err, errClosed) || r.Class != status.ClassInternal {
		t.Fatalf("after close: %v %q %v", r.Status, r.Class, r.Err)
	}
	for _, m := range []Module{
		{},
		{Kind: "smtp"},
		{Kind: KindHTTP, Timeout: -time.Second},
		{Kind: KindHTTP, Conditions: condition.Spec{Healthy: []string{"statuss == 200"}}},
		{Kind: KindHTTP, TLS: TLSClientConfig{CAPEM: []byte("not pem")}},
		{Kind: KindTCP, TCP: TCPConfig{Expect: "("}},
		{Kind: KindDNS, DNS: DNSConfig{Type: "SOA"}},
	} {
		if _, err := New(m); err == nil {
			t.Errorf("New(%+v) accepted an invalid module", m)
		}
	}
	_, err = New(Module{Kind: KindHTTP, Conditions: condition.Spec{Healthy: []string{"status == 200 &&"}}})
	var ce *condition.Error
	if !errors.As(err, &ce) || ce.Column != 17 {
		t.Fatalf("condition error should carry the column: %v", err)
	}
}
