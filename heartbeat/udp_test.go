package heartbeat_test

import (
	"context"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestUDPEndToEnd: a real sender and a real receiver on loopback: beats
// are observed with the sender's status, ACKs come back, RTT is measured,
// and the trace context crosses (the receive span is the send span's child).
func TestUDPEndToEnd(t *testing.T) {
	k := testKey(t)
	recvExp := tracetest.NewInMemoryExporter()
	recvTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(recvExp))
	defer recvTP.Shutdown(context.Background())
	m := startMonitor(t, k, monitorOpts{udp: true, opts: []ingest.Option{ingest.WithTracerProvider(recvTP)}})
	sendExp := tracetest.NewInMemoryExporter()
	sendTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(sendExp))
	defer sendTP.Shutdown(context.Background())

	res := newResults()
	s, err := heartbeat.New(heartbeat.Config{
		Service: "api", Instance: "api-1", Target: m.udp, Key: k, Interval: 50 * time.Millisecond,
		Status:   func() (status.Status, wire.Reason) { return status.Degraded, wire.ReasonOverloaded },
		OnResult: res.add,
	}, heartbeat.WithTracerProvider(sendTP))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, s)
	rs := res.waitN(t, 5, 5*time.Second)
	stop()
	for _, r := range rs[:5] {
		if !r.Acked || r.Err != nil || r.Attempts != 1 || r.RTT <= 0 || r.RTT > time.Second || r.Epoch != s.Epoch() {
			t.Fatalf("result %+v", r)
		}
	}
	obs := m.sink.waitFor(t, 2*time.Second, func(o []ingest.Observation) bool { return len(o) >= 5 })
	for i, o := range obs[:5] {
		if o.Seq != uint64(i+1) || o.Status != status.Degraded || o.Reason != wire.ReasonOverloaded || o.Epoch != s.Epoch() ||
			o.Interval != 50*time.Millisecond || o.Transport != wire.UDP || !o.TraceParent.IsValid() {
			t.Fatalf("observation %d: %+v", i, o)
		}
	}
	// Later beats report the sender's smoothed RTT.
	if obs[4].RTT <= 0 {
		t.Errorf("beat 5 carries RTT %v", obs[4].RTT)
	}
	st := s.Stats()
	if st.Beats < 5 || st.Acked < 5 || st.SRTT <= 0 || st.BadAcks != 0 {
		t.Errorf("stats %+v", st)
	}
	sendSpans := sendExp.GetSpans()
	recvSpans := recvExp.GetSpans()
	if len(sendSpans) < 5 || len(recvSpans) < 5 {
		t.Fatalf("spans: %d sent, %d received", len(sendSpans), len(recvSpans))
	}
	byID := map[string]bool{}
	for _, sp := range sendSpans {
		if sp.Name != "pulse.beat.send" {
			t.Fatalf("send span %q", sp.Name)
		}
		byID[sp.SpanContext.SpanID().String()] = true
	}
	for _, sp := range recvSpans[:5] {
		if !byID[sp.Parent.SpanID().String()] || sp.Parent.TraceID() != sendSpans[0].SpanContext.TraceID() && !byID[sp.Parent.SpanID().String()] {
			t.Fatalf("receive span's parent %v is not a send span", sp.Parent.SpanID())
		}
	}
	if obs[0].TraceParent.String() == "" || obs[0].TraceParent.TraceID != [16]byte(sendSpans[0].SpanContext.TraceID()) {
		t.Fatalf("observation trace %v vs send span %v", obs[0].TraceParent, sendSpans[0].SpanContext.TraceID())
	}
}
