package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/internal/faultnet/toxi"
	"github.com/fb4b1dcc/pulse/wire"
)

// AP-17: the heartbeat path is traced end to end. A 300ms delay injected
// by toxiproxy in front of an HTTPS target shows in the probe's TLS phase
// span; a UDP beat's trace context reaches the monitor, whose receive span
// is in the sender's trace, and the verdict span follows its evidence.
func TestTracesOnTheHeartbeatPath(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"code":0}`))
	}))
	srv.TLS = &tls.Config{}
	srv.StartTLS()
	defer srv.Close()
	px, err := toxi.New(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	// Client → server bytes wait 300ms: the ClientHello is the first.
	if err := px.Latency(toxi.Upstream, 300, 0); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`
modules:
  ready:
    kind: http
    timeout: 3s
    tls: {insecure_skip_verify: true}
services:
  - name: web
    active: [{module: ready, interval: 5s}]
    instances: [{name: web-1, target: "https://%s/healthz"}]
  - name: fleet
    register_by_beats: true
    passive: {interval: 200ms, keys: [{id: 1, secret: {value: %s}}]}
`, px.Addr(), fleetKey)))
	if err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, Options{Config: c, InMemory: true, TracerProvider: tp})
	key, _ := wire.NewKey(1, []byte(fleetKey))
	s, _ := heartbeat.New(heartbeat.Config{Service: "fleet", Instance: "traced", Target: r.d.UDPAddr(), Key: key,
		Interval: 200 * time.Millisecond}, heartbeat.WithTracerProvider(tp))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	waitFor(t, 15*time.Second, "a probe and beats to be traced", func() bool {
		v, err := r.d.mon.Instance("web", "web-1")
		b, err2 := r.d.mon.Instance("fleet", "traced")
		return err == nil && err2 == nil && v.State.String() == "alive" && b.Beats >= 3
	})
	cancel()
	<-done
	r.stop(t)

	spans := exp.GetSpans()
	var tlsPhase time.Duration
	for _, sp := range spans {
		if sp.Name == "tls" {
			tlsPhase = max(tlsPhase, sp.EndTime.Sub(sp.StartTime))
		}
	}
	if tlsPhase < 300*time.Millisecond {
		t.Errorf("the TLS phase span lasted %v; the injected 300ms delay is not in it", tlsPhase)
	}
	sends := map[string]bool{}
	for _, sp := range spans {
		if sp.Name == "pulse.beat.send" {
			sends[sp.SpanContext.SpanID().String()] = true
		}
	}
	linked, verdict := 0, false
	for _, sp := range spans {
		if sp.Name == "pulse.beat.receive" && sends[sp.Parent.SpanID().String()] {
			linked++
		}
		if sp.Name == "pulse.verdict" && sends[sp.Parent.SpanID().String()] {
			verdict = true
		}
	}
	if linked == 0 {
		t.Errorf("no receive span is a child of a send span (%d sends, %d spans)", len(sends), len(spans))
	}
	if !verdict {
		var names []string
		for _, sp := range spans {
			names = append(names, sp.Name)
		}
		t.Errorf("no verdict span follows a beat's trace; spans: %s", strings.Join(names, ","))
	}
}
