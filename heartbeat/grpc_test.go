package heartbeat_test

import (
	"context"
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// TestGRPCBeatsDirectiveAndReconnect: beats over one gRPC stream, the
// monitor's interval reaches the sender live, and when the monitor
// restarts on the same address the sender reconnects and goes on.
func TestGRPCBeatsDirectiveAndReconnect(t *testing.T) {
	var wantInterval atomic.Int64
	wantInterval.Store(int64(80 * time.Millisecond))
	dir := func(string, string) wire.Directive {
		return wire.Directive{Interval: time.Duration(wantInterval.Load()), Jitter: 5 * time.Millisecond}
	}
	m := startMonitor(t, testKey(t), monitorOpts{grpc: true, directives: dir})
	addr := m.grpc
	res := newResults()
	snd, err := heartbeat.New(heartbeat.Config{
		Service: "api", Instance: "api-1", Transport: wire.GRPC, Target: addr, Token: token,
		Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond, MinInterval: 10 * time.Millisecond,
		Status:   func() (status.Status, wire.Reason) { return status.Degraded, wire.ReasonStarting },
		OnResult: res.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, snd)
	obs := m.sink.waitFor(t, 5*time.Second, func(o []ingest.Observation) bool { return len(o) >= 5 })
	if st := snd.Stats(); st.Interval != 80*time.Millisecond || st.Jitter != 5*time.Millisecond {
		t.Fatalf("directive not applied: %+v", st)
	}
	o := obs[4]
	if o.Transport != wire.GRPC || o.Status != status.Degraded || o.Reason != wire.ReasonStarting || o.Interval != 80*time.Millisecond {
		t.Fatalf("observation %+v", o)
	}
	for _, r := range res.waitN(t, 5, 2*time.Second)[:5] {
		if !r.Acked || r.RTT <= 0 {
			t.Fatalf("result %+v", r)
		}
	}

	// Restart the monitor on the same address.
	m.stop()
	var m2 *monitor
	for range 50 {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			m2 = startMonitorOn(t, addr, dir)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m2 == nil {
		t.Fatalf("could not listen on %s again", addr)
	}
	m2.sink.waitFor(t, 10*time.Second, func(o []ingest.Observation) bool { return len(o) >= 3 })
	if st := snd.Stats(); st.Reconnects < 1 {
		t.Fatalf("stats %+v: want a reconnect", st)
	}
}

func startMonitorOn(t *testing.T, addr string, dir func(string, string) wire.Directive) *monitor {
	t.Helper()
	s := newSink()
	r, err := ingest.New(ingest.Config{GRPCAddr: addr, Sink: s, Tokens: map[string][]string{"api": {token}}, Directives: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-r.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("restart monitor: %v", err)
	}
	t.Cleanup(func() { cancel(); <-done })
	return &monitor{r: r, sink: s, grpc: addr}
}

// TestGRPCOverTLS: the same stream over TLS, the server's certificate
// checked against a CA the test made.
func TestGRPCOverTLS(t *testing.T) {
	ca := newCA(t)
	cert := ca.issue(t, "monitor")
	m := startMonitor(t, testKey(t), monitorOpts{grpc: true, tls: &tls.Config{Certificates: []tls.Certificate{*cert}}})
	res := newResults()
	snd, err := heartbeat.New(heartbeat.Config{
		Service: "api", Instance: "api-1", Transport: wire.GRPC, Target: m.grpc, Token: token,
		TLS: &tls.Config{RootCAs: ca.pool, ServerName: "localhost"}, Interval: 30 * time.Millisecond, OnResult: res.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, snd)
	for _, r := range res.waitN(t, 3, 5*time.Second)[:3] {
		if !r.Acked {
			t.Fatalf("%+v", r)
		}
	}
	// A sender that does not trust the CA gets nowhere.
	res2 := newResults()
	bad, _ := heartbeat.New(heartbeat.Config{
		Service: "api", Instance: "api-2", Transport: wire.GRPC, Target: m.grpc, Token: token,
		TLS: &tls.Config{ServerName: "localhost"}, Interval: 30 * time.Millisecond, Timeout: 20 * time.Millisecond, OnResult: res2.add,
	})
	run(t, bad)
	for _, r := range res2.waitN(t, 2, 5*time.Second) {
		if r.Acked {
			t.Fatalf("untrusted server accepted: %+v", r)
		}
	}
}
