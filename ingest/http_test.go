package ingest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func httpRig(t *testing.T, tlsCfg *tls.Config, opts ...Option) (*rig, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := start(t, func(c *Config) {
		c.HTTPListener = ln
		c.TLS = tlsCfg
		c.Directives = func(string, string) wire.Directive { return wire.Directive{Interval: 3 * time.Second} }
	}, opts...)
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	return g, scheme + "://" + ln.Addr().String() + wire.BeatPath
}

func beatBody(seq uint64, mod func(*wire.BeatJSON)) []byte {
	b := wire.BeatJSON{Service: "api", Instance: "api-1", Epoch: 1 << 60, Seq: seq, SentAtNS: int64(seq) * 1e9,
		Status: status.Healthy, IntervalMS: 1000, RTTMicros: 250}
	if mod != nil {
		mod(&b)
	}
	p, _ := json.Marshal(b)
	return p
}

func post(t *testing.T, c *http.Client, url, token string, body []byte, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func TestHTTPBeat(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	g, url := httpRig(t, nil, WithTracerProvider(tp))
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	const tp1 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

	code, body := post(t, c, url, testToken, beatBody(1, func(b *wire.BeatJSON) { b.Status = status.Degraded; b.Reason = wire.ReasonOverloaded }), map[string]string{"traceparent": tp1})
	var ack wire.AckJSON
	if code != 200 || json.Unmarshal(body, &ack) != nil || ack.Code != "accepted" || ack.Seq != 1 || ack.Epoch != 1<<60 || ack.SentAtNS != 1e9 || ack.IntervalMS != 3000 {
		t.Fatalf("accepted beat: %d %s", code, body)
	}
	o := g.sink.waitN(t, 1)[0]
	if o.Transport != wire.HTTP || o.Status != status.Degraded || o.Reason != wire.ReasonOverloaded || o.RTT != 250*time.Microsecond ||
		o.Interval != time.Second || o.TraceParent.String() != tp1 || !o.Peer.Addr().IsLoopback() {
		t.Fatalf("observation %+v", o)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "pulse.beat.receive" || spans[0].Parent.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		spans[0].Parent.SpanID().String() != "00f067aa0ba902b7" || !spans[0].Parent.IsRemote() {
		t.Fatalf("receive span: %+v", spans)
	}

	cases := []struct {
		name   string
		token  string
		body   []byte
		method string
		code   int
		reason string
	}{
		{"duplicate", testToken, beatBody(1, nil), "", 200, ""},
		{"no token", "", beatBody(2, nil), "", 401, "auth"},
		{"wrong token", "tok-0123456789abcdeX", beatBody(2, nil), "", 401, "auth"},
		{"other service's token", testToken, beatBody(2, func(b *wire.BeatJSON) { b.Service = "web" }), "", 401, "auth"},
		{"not json", testToken, []byte("{"), "", 400, "malformed"},
		{"bad id", testToken, beatBody(2, func(b *wire.BeatJSON) { b.Instance = "a b" }), "", 400, "malformed"},
		{"bad status", testToken, []byte(strings.Replace(string(beatBody(2, nil)), `"healthy"`, `"fine"`, 1)), "", 400, "malformed"},
		{"oversized", testToken, append(beatBody(2, nil)[:10], bytes.Repeat([]byte(" "), 5000)...), "", 413, "oversized"},
		{"old epoch", testToken, beatBody(2, func(b *wire.BeatJSON) { b.Epoch = 5 }), "", 409, "replay"},
		{"get", testToken, nil, http.MethodGet, 405, "malformed"},
	}
	for _, tc := range cases {
		var code int
		var body []byte
		if tc.method == http.MethodGet {
			resp, err := c.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			code = resp.StatusCode
		} else {
			code, body = post(t, c, url, tc.token, tc.body, nil)
		}
		if code != tc.code {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, code, tc.code, body)
			continue
		}
		if tc.reason != "" {
			var e wire.ErrorJSON
			if json.Unmarshal(body, &e) != nil || e.Reason != tc.reason || e.Error == "" {
				t.Errorf("%s: body %s, want reason %s", tc.name, body, tc.reason)
			}
		} else if !strings.Contains(string(body), `"code":"duplicate"`) {
			t.Errorf("%s: body %s", tc.name, body)
		}
	}
	s := g.r.Stats()
	want := map[DropReason]uint64{DropDuplicate: 1, DropAuth: 3, DropMalformed: 4, DropOversized: 1, DropReplay: 1}
	for _, r := range DropReasons() {
		if s.Drops(r) != want[r] {
			t.Errorf("drops[%v] = %d, want %d", r, s.Drops(r), want[r])
		}
	}
	if s.Received[wire.HTTP] != 11 || s.Accepted[wire.HTTP] != 1 || len(g.sink.all()) != 1 {
		t.Errorf("received %d accepted %d observed %d", s.Received[wire.HTTP], s.Accepted[wire.HTTP], len(g.sink.all()))
	}
}

func TestHTTPMutualTLS(t *testing.T) {
	ca := newCA(t)
	srvCert := ca.issue(t, "monitor", false)
	_, url := httpRig(t, &tls.Config{
		Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool,
	})
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	defer noCert.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(beatBody(1, nil)))
	if resp, err := noCert.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("a client without a certificate got through mTLS")
	}
	withCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: ca.pool, Certificates: []tls.Certificate{ca.issue(t, "api-1", true)},
	}}}
	defer withCert.CloseIdleConnections()
	if code, body := post(t, withCert, url, testToken, beatBody(1, nil), nil); code != 200 {
		t.Fatalf("mTLS client: %d %s", code, body)
	}
}
