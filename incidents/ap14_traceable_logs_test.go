package incidents

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/internal/faultnet/toxi"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/telemetry"
)

// AP-14 (INC-2021-333, INC-2022-265): heartbeat failures were logged as
// "heartbeat timeout for node", with no trace id and no peer address;
// finding the root cause took more than 47 minutes.
//
// Pass criterion (INCIDENTS.md): an induced failure's log line has every
// field filled (trace_id, span_id, peer_addr, service, instance, check,
// attempt, latency, error class), and its trace_id is the exported
// span's.
//
// The failure is induced on the real path: an HTTPS health endpoint behind
// toxiproxy; after it has been probed healthy, toxiproxy delays every byte
// towards it by 800 ms, so the next probes time out in the TLS handshake
// (timeout 500 ms). The daemon runs in-process with its JSON logger and an
// in-memory span exporter. Real time: the network is the subject.

// apb14Target is an HTTPS endpoint behind toxiproxy.
type apb14Target struct {
	ca     *apbCA
	srv    *httptest.Server
	px     *toxi.Proxy
	caFile string
}

func apb14Start(t *testing.T) *apb14Target {
	t.Helper()
	ca := apbNewCA(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"code":0}`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.server(t)}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	px, err := toxi.New(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	return &apb14Target{ca: ca, srv: srv, px: px, caFile: ca.caFile(t)}
}

// url addresses the proxy by name, so the probe has a DNS phase too.
func (a *apb14Target) url() string {
	_, port, _ := strings.Cut(a.px.Addr(), ":")
	return "https://localhost:" + port + "/healthz"
}

// TestAP14FailureLogCarriesTrace: pass: the first "probe failed" line
// after the fault has trace_id, span_id, peer_addr (the proxy's address),
// service, instance, module (the check), source, attempt, latency (≥ the
// 500 ms timeout), error_class ("timeout") and a reason naming the TLS
// handshake, all non-empty; its trace_id and span_id are those of an
// exported "probe http" span with error status; the "transition" line
// that takes the instance down carries the same peer and class and a
// trace_id of an exported verdict span whose parent is a failed probe span.
func TestAP14FailureLogCarriesTrace(t *testing.T) {
	tgt := apb14Start(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	logs := &apbLogBuf{}
	cfg := parseConfig(t, fmt.Sprintf(`
defaults:
  verdict: {down_after: 1s, startup_grace: 1s}
modules:
  ready:
    kind: http
    timeout: 500ms
    tls: {ca_file: %q}
services:
  - name: shop
    active: [{module: ready, interval: 1s}]
    instances: [{name: shop-1, zone: a, target: %q}]
`, tgt.caFile, tgt.url()))
	mp := startMonitor(t, daemon.Options{Config: cfg, TracerProvider: tp, Logger: telemetry.NewLogger(logs, telemetry.LogOptions{})})
	waitFor(t, 10*time.Second, "shop-1 to be alive", func() bool {
		v, err := mp.Mon().Instance("shop", "shop-1")
		return err == nil && v.State == monitor.Alive
	})
	if err := tgt.px.Latency(toxi.Upstream, 800, 0); err != nil {
		t.Fatal(err)
	}
	// Pooled connections do not handshake: cut them, so the next probe
	// dials and meets the delay in its handshake.
	tgt.srv.CloseClientConnections()
	waitFor(t, 20*time.Second, "shop-1 to be down", func() bool {
		v, err := mp.Mon().Instance("shop", "shop-1")
		return err == nil && v.State == monitor.Down
	})
	mp.Stop()

	var failed, down map[string]any
	for _, l := range logs.lines() {
		if failed == nil && l["msg"] == "probe failed" {
			failed = l
		}
		if down == nil && l["msg"] == "transition" && l["to"] == "down" {
			down = l
		}
	}
	if failed == nil || down == nil {
		for _, l := range logs.lines() {
			t.Log(l)
		}
		t.Fatalf("no probe failure or down line in the logs (%d lines)", len(logs.lines()))
	}
	t.Logf("pulse: %v", failed)
	t.Logf("pulse: %v", down)
	for _, k := range []string{"trace_id", "span_id", "peer_addr", "service", "instance", "module", "source", "attempt", "latency", "error_class", "reason"} {
		if v, ok := failed[k]; !ok || v == nil || v == "" {
			t.Errorf("probe failure line: %s missing or empty", k)
		}
	}
	if failed["peer_addr"] != tgt.px.Addr() || failed["error_class"] != "timeout" || failed["source"] != "active" ||
		failed["service"] != "shop" || failed["instance"] != "shop-1" || failed["module"] != "ready" ||
		!strings.Contains(fmt.Sprint(failed["reason"]), "TLS handshake") {
		t.Errorf("probe failure line has the wrong values: %v", failed)
	}
	if lat, ok := failed["latency"].(float64); !ok || time.Duration(lat) < 500*time.Millisecond {
		t.Errorf("latency %v, want ≥ the 500ms timeout", failed["latency"])
	}
	spans := exp.GetSpans()
	byID := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID().String()] = s
	}
	probeSpan, ok := byID[fmt.Sprint(failed["span_id"])]
	if !ok || probeSpan.SpanContext.TraceID().String() != failed["trace_id"] || probeSpan.Name != "probe http" || probeSpan.Status.Code.String() != "Error" {
		t.Fatalf("the failure line's trace %v span %v is not an exported failed probe span (%d spans; found %v %q %v)",
			failed["trace_id"], failed["span_id"], len(spans), ok, probeSpan.Name, probeSpan.Status)
	}
	for _, k := range []string{"trace_id", "span_id", "peer_addr", "service", "instance", "zone", "from", "source", "latency", "error_class", "reason"} {
		if v, ok := down[k]; !ok || v == nil || v == "" {
			t.Errorf("down line: %s missing or empty", k)
		}
	}
	if down["peer_addr"] != tgt.px.Addr() || down["error_class"] != "timeout" {
		t.Errorf("down line: peer %v class %v", down["peer_addr"], down["error_class"])
	}
	verdict, ok := byID[fmt.Sprint(down["span_id"])]
	if !ok || verdict.Name != "pulse.verdict" || verdict.SpanContext.TraceID().String() != down["trace_id"] {
		t.Fatalf("the down line's span %v is not an exported verdict span", down["span_id"])
	}
	if parent, ok := byID[verdict.Parent.SpanID().String()]; !ok || parent.Name != "probe http" || parent.Status.Code.String() != "Error" {
		t.Fatalf("the verdict span's parent is not a failed probe span: %v %q", ok, parent.Name)
	}
}

// TestAP14Naive runs the seed's heartbeat check on the same induced
// failure: an HTTP client with a timeout and, on failure, the seed's line
// log.Warn("heartbeat timeout for node") (structured, even: JSON). It must
// fail the criterion: the line has no trace_id, span_id, peer_addr,
// instance or error class, and no span exists to match.
func TestAP14Naive(t *testing.T) {
	tgt := apb14Start(t)
	if err := tgt.px.Latency(toxi.Upstream, 800, 0); err != nil {
		t.Fatal(err)
	}
	logs := &apbLogBuf{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	client := &http.Client{Timeout: 500 * time.Millisecond, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tgt.ca.pool}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(tgt.url())
	if err == nil {
		resp.Body.Close()
		t.Fatal("the seed's check succeeded through an 800 ms delay with a 500 ms timeout")
	}
	logger.Warn("heartbeat timeout for node") // the seed's line
	lines := logs.lines()
	if len(lines) != 1 {
		t.Fatalf("%d lines", len(lines))
	}
	t.Logf("seed: %v (the error was: %v)", lines[0], err)
	missing := 0
	for _, k := range []string{"trace_id", "span_id", "peer_addr", "service", "instance", "module", "attempt", "latency", "error_class"} {
		if _, ok := lines[0][k]; !ok {
			missing++
		}
	}
	if missing != 9 {
		t.Fatalf("the seed's line has %d of the 9 fields: the replay does not bite", 9-missing)
	}
}
