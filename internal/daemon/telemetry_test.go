package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/telemetry"
	"github.com/fb4b1dcc/pulse/wire"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) lines() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install Debian's prometheus package (apt-get install -y prometheus); .ci/run does")
	}
	return p
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// AP-15: a process whose sidecar keeps beating while its HTTP endpoint
// hangs. Active observations fail, passive ones succeed, the combined
// verdict is down with the probe's reason, the series tell the sources
// apart, and the exposition passes promtool and client_golang's linter.
func TestMetricsTellSourcesApart(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer hung.Close()
	c, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`
defaults:
  verdict: {down_after: 500ms, startup_grace: 1s}
modules:
  ready: {kind: http, timeout: 200ms}
services:
  - name: shop
    passive: {interval: 200ms, keys: [{id: 1, secret: {value: %s}}]}
    active: [{module: ready, interval: 300ms}]
    instances: [{name: shop-1, zone: a, target: %q}]
`, fleetKey, hung.URL+"/healthz")))
	if err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, Options{Config: c, InMemory: true})
	defer r.stop(t)
	key, _ := wire.NewKey(1, []byte(fleetKey))
	s, _ := heartbeat.New(heartbeat.Config{Service: "shop", Instance: "shop-1", Target: r.d.UDPAddr(), Key: key, Interval: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor(t, 10*time.Second, "the hung instance to be down", func() bool {
		v, err := r.d.mon.Instance("shop", "shop-1")
		return err == nil && v.State.String() == "down"
	})
	v, _ := r.d.mon.Instance("shop", "shop-1")
	if !strings.Contains(v.Reason, "probe ready failed") || !strings.Contains(v.Reason, "(timeout)") || v.Beats == 0 {
		t.Fatalf("verdict: %s %q (beats %d)", v.State, v.Reason, v.Beats)
	}
	time.Sleep(500 * time.Millisecond)
	text := scrape(t, r.base)
	for _, want := range []string{
		`pulse_observations_total{result="healthy",service="shop",source="passive",transport="udp"}`,
		`pulse_observations_total{result="timeout",service="shop",source="active",transport="http"}`,
		`pulse_instances{service="shop",state="down",zone="a"} 1`,
		`pulse_transitions_total{from="suspect",reason_class="probe_failed",service="shop",to="down"} 1`,
		`pulse_beat_rtt_seconds_bucket{service="shop",transport="udp"`,
		`pulse_probe_duration_seconds_bucket{module="ready",phase="total",service="shop"`,
		`pulse_ingest_dropped_total{reason="auth"} 0`,
		`pulse_config_info{hash="`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
	if strings.Contains(text, `pulse_observations_total{result="healthy",service="shop",source="active"`) {
		t.Error("active series count healthy results from a hung endpoint")
	}
	problems, err := testutil.GatherAndLint(r.d.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	cmd := exec.Command(promtool(t), "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// Cardinality: 100,000 instances with per-instance metrics off add no
// per-instance series.
func TestCardinalityBounded(t *testing.T) {
	c, err := config.Parse("t.yaml", []byte(`services:
  - name: big
    register_by_beats: true
    passive: {interval: 1s, tokens: [{value: 0123456789abcdef}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, Options{Config: c, InMemory: true})
	defer r.stop(t)
	count := func() int {
		n := 0
		for _, line := range strings.Split(scrape(t, r.base), "\n") {
			if strings.HasPrefix(line, "pulse_") {
				n++
			}
		}
		return n
	}
	before := count()
	obs := make([]ingest.Observation, 1000)
	now := time.Now()
	for b := range 100 {
		for i := range obs {
			obs[i] = ingest.Observation{Service: "big", Instance: fmt.Sprintf("i%06d", b*1000+i), Epoch: 1, Seq: 1, ReceivedAt: now,
				Status: status.Healthy, Transport: wire.UDP, RTT: time.Millisecond}
		}
		r.d.mon.ObserveBatch(obs)
	}
	sv, _ := r.d.mon.Service("big")
	if sv.Instances != 100000 {
		t.Fatalf("%d instances", sv.Instances)
	}
	after := count()
	// Only the new (service, transport, result) and histogram series for
	// one service may appear: a bounded number, independent of instances.
	if after-before > 60 {
		t.Fatalf("series grew from %d to %d for 100,000 instances", before, after)
	}
}

// AP-14: an induced probe failure produces a log line with every field
// filled, and its trace_id and span_id are those of the probe span the
// in-memory exporter recorded.
func TestFailureLogCarriesTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	logs := &lockedBuf{}
	c, err := config.Parse("t.yaml", []byte(`
modules:
  ready: {kind: http, timeout: 300ms}
services:
  - name: shop
    active: [{module: ready, interval: 1s}]
    instances: [{name: shop-1, target: "http://127.0.0.1:1/healthz"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, Options{Config: c, InMemory: true, TracerProvider: tp,
		Logger: telemetry.NewLogger(logs, telemetry.LogOptions{})})
	var line map[string]any
	waitFor(t, 10*time.Second, "a probe failure line", func() bool {
		for _, l := range logs.lines() {
			if l["msg"] == "probe failed" {
				line = l
				return true
			}
		}
		return false
	})
	r.stop(t)
	for _, k := range []string{"trace_id", "span_id", "peer_addr", "service", "instance", "module", "source", "attempt", "latency", "error_class", "reason"} {
		if v, ok := line[k]; !ok || v == "" || v == nil {
			t.Errorf("field %s missing or empty in %v", k, line)
		}
	}
	if line["error_class"] != "refused" || line["source"] != "active" {
		t.Errorf("class/source: %v", line)
	}
	found := false
	for _, sp := range exp.GetSpans() {
		if sp.SpanContext.TraceID().String() == line["trace_id"] && sp.SpanContext.SpanID().String() == line["span_id"] {
			found = true
		}
	}
	if !found {
		t.Fatalf("no exported span has trace %v span %v (%d spans)", line["trace_id"], line["span_id"], len(exp.GetSpans()))
	}
}

// The sample alerting rules parse with promtool.
func TestAlertRulesParse(t *testing.T) {
	path, _ := filepath.Abs("../../examples/alerts.yaml")
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool(t), "check", "rules", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// Instances without a zone (every beat-registered one) and the service as
// a whole must not collide in pulse_protection_active: the scrape fails on
// a duplicate series.
func TestScrapeWithUnzonedInstances(t *testing.T) {
	c, err := config.Parse("t.yaml", []byte(`services:
  - name: big
    register_by_beats: true
    passive: {interval: 1s, tokens: [{value: 0123456789abcdef}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, Options{Config: c, InMemory: true})
	defer r.stop(t)
	r.d.mon.ObserveBatch([]ingest.Observation{{Service: "big", Instance: "x", Epoch: 1, Seq: 1, ReceivedAt: time.Now(), Status: status.Healthy, Transport: wire.UDP}})
	if _, err := r.d.Registry().Gather(); err != nil {
		t.Fatalf("gather: %v", err)
	}
	text := scrape(t, r.base)
	for _, want := range []string{`pulse_protection_active{service="big",zone="*"} 0`, `pulse_protection_active{service="big",zone=""} 0`} {
		if !strings.Contains(text, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}
