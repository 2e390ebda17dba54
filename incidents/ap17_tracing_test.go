package incidents

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/internal/faultnet/toxi"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/telemetry"
)

// AP-17 (INC-2023-242): the heartbeat path had no OpenTelemetry. When
// cross-zone latency rose, nobody could say whether DNS, the connection,
// the TLS handshake or the answer was slow.
//
// Pass criterion (INCIDENTS.md): an in-memory OTLP exporter receives a
// probe trace whose TLS phase shows the delay injected into the handshake.
//
// Real time, the real export path: the daemon is configured (pulse.yaml's
// telemetry.otlp) to export over OTLP/gRPC to an in-memory OTLP receiver
// (helpers_b_test.go), as it would to a collector; a sidecar heartbeat
// Sender exports its spans to the same receiver under its own service
// name. The probed HTTPS endpoint sits behind toxiproxy, which delays
// every byte towards it by 300 ms, starting with the ClientHello.

// TestAP17ProbeTraceShowsTLSDelay: pass: the receiver gets, from service
// "pulse", a "probe http" span (status OK) whose children in the same
// trace are the phases dns, connect, tls and ttfb; the tls phase lasts
// ≥ 300 ms while dns and connect last < 100 ms (the delay is attributed
// to the handshake, not elsewhere); and the beat path is one trace across
// processes: a "pulse.beat.receive" span from "pulse" is the child of a
// "pulse.beat.send" span from "shop-sidecar", and a "pulse.verdict" span
// follows a beat's trace.
func TestAP17ProbeTraceShowsTLSDelay(t *testing.T) {
	col := apbStartOTLP(t)
	tgt := apb14Start(t)
	if err := tgt.px.Latency(toxi.Upstream, 300, 0); err != nil {
		t.Fatal(err)
	}
	cfg := parseConfig(t, fmt.Sprintf(`
telemetry:
  otlp: {endpoint: %q, protocol: grpc, insecure: true}
modules:
  ready:
    kind: http
    timeout: 3s
    tls: {ca_file: %q}
services:
  - name: web
    active: [{module: ready, interval: 5s}]
    instances: [{name: web-1, target: %q}]
  - name: fleet
    passive: {interval: 200ms, keys: [{id: 1, secret: {value: %%KEY%%}}]}
`, col.addr, tgt.caFile, tgt.url()))
	mp := startMonitor(t, daemon.Options{Config: cfg})
	tp, shutdown, err := telemetry.SetupTracing(context.Background(), telemetry.TraceOptions{OTLPEndpoint: col.addr, OTLPInsecure: true, Service: "shop-sidecar"})
	if err != nil {
		t.Fatal(err)
	}
	ss := newSenders(t)
	ss.Start(t, heartbeat.Config{Service: "fleet", Instance: "traced", Target: mp.D.UDPAddr(), Interval: 200 * time.Millisecond},
		heartbeat.WithTracerProvider(tp))
	waitFor(t, 15*time.Second, "a probe and beats", func() bool {
		v, err := mp.Mon().Instance("web", "web-1")
		b, err2 := mp.Mon().Instance("fleet", "traced")
		return err == nil && err2 == nil && v.State == monitor.Alive && b.Beats >= 3
	})
	ss.StopAll()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shutdown(sctx); err != nil { // flushes the sidecar's spans
		t.Fatal(err)
	}
	mp.Stop() // flushes the daemon's

	spans := col.received()
	id := func(b []byte) string { return hex.EncodeToString(b) }
	byID := map[string]*apbSpan{}
	for _, s := range spans {
		byID[id(s.SpanId)] = s
	}
	var probeSpan *apbSpan
	for _, s := range spans {
		if s.Service == "pulse" && s.Name == "probe http" && s.Status.GetCode().String() == "STATUS_CODE_OK" {
			probeSpan = s
			break
		}
	}
	if probeSpan == nil {
		t.Fatalf("no successful probe span among %d received spans", len(spans))
	}
	phases := map[string]time.Duration{}
	for _, s := range spans {
		isPhase := s.Name == "dns" || s.Name == "connect" || s.Name == "tls" || s.Name == "ttfb" || s.Name == "transfer"
		if isPhase && id(s.ParentSpanId) == id(probeSpan.SpanId) && id(s.TraceId) == id(probeSpan.TraceId) {
			phases[s.Name] = apbSpanDur(s)
		}
	}
	t.Logf("pulse: probe trace %s: total %v, phases %v", id(probeSpan.TraceId), apbSpanDur(probeSpan), phases)
	for _, ph := range []string{"dns", "connect", "tls", "ttfb"} {
		if _, ok := phases[ph]; !ok {
			t.Errorf("the probe trace has no %s phase", ph)
		}
	}
	if phases["tls"] < 300*time.Millisecond {
		t.Errorf("the tls phase lasted %v: the 300ms injected into the handshake is not in it", phases["tls"])
	}
	if phases["dns"] >= 100*time.Millisecond || phases["connect"] >= 100*time.Millisecond {
		t.Errorf("dns %v / connect %v took the delay", phases["dns"], phases["connect"])
	}

	sends := map[string]bool{}
	for _, s := range spans {
		if s.Service == "shop-sidecar" && s.Name == "pulse.beat.send" {
			sends[id(s.SpanId)] = true
		}
	}
	linked, verdicts := 0, 0
	for _, s := range spans {
		if s.Service != "pulse" || !sends[id(s.ParentSpanId)] {
			continue
		}
		switch s.Name {
		case "pulse.beat.receive":
			linked++
		case "pulse.verdict":
			verdicts++
		}
	}
	t.Logf("pulse: %d spans received; %d beat sends from the sidecar, %d receive spans and %d verdict spans in their traces", len(spans), len(sends), linked, verdicts)
	if len(sends) == 0 || linked == 0 || verdicts == 0 {
		t.Errorf("the beat path is not one trace: %d sends, %d linked receives, %d verdicts", len(sends), linked, verdicts)
	}
}

// TestAP17Naive runs the seed's heartbeat check, which has no
// OpenTelemetry, through the same delayed HTTPS endpoint, in a process
// that has the same OTLP pipeline set up. It must fail the criterion: the
// receiver gets no span at all, so nothing attributes the delay; all the
// seed knows is the total time.
func TestAP17Naive(t *testing.T) {
	col := apbStartOTLP(t)
	tgt := apb14Start(t)
	if err := tgt.px.Latency(toxi.Upstream, 300, 0); err != nil {
		t.Fatal(err)
	}
	_, shutdown, err := telemetry.SetupTracing(context.Background(), telemetry.TraceOptions{OTLPEndpoint: col.addr, OTLPInsecure: true, Service: "seed"})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: tgt.ca.pool}}}
	defer client.CloseIdleConnections()
	start := time.Now()
	resp, err := client.Get(tgt.url())
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	spans := col.received()
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	t.Logf("seed: the check took %v (status %d); spans received: %d %s", took.Round(time.Millisecond), resp.StatusCode, len(spans), strings.Join(names, ","))
	if took < 300*time.Millisecond {
		t.Fatalf("the delay was not injected (%v)", took)
	}
	if len(spans) != 0 {
		t.Fatalf("the seed's check produced %d spans: the replay does not bite", len(spans))
	}
}
