package incidents

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fb4b1dcc/pulse/internal/faultnet/toxi"
	"github.com/fb4b1dcc/pulse/probe"
	"github.com/fb4b1dcc/pulse/status"
)

// AP-11 (INC-2022-052, INC-2023-281): heartbeats dialled TLS with a zero
// net.Dialer: no dial timeout, no handshake deadline. A peer that accepted
// the TCP connection and never answered the ClientHello held the calling
// goroutine forever; thousands of them starved the process.
//
// Pass criterion (INCIDENTS.md): a server that accepts TCP and never
// speaks TLS: the probe fails within its timeout + 10 %; a thousand such
// probes leave no goroutine behind.
//
// The fault is real: a TLS server behind toxiproxy, whose timeout toxic
// (timeout 0) accepts every connection and then drops every byte both ways
// without closing. Real time: the network is the subject.

const apb11Timeout = time.Second

// apb11Peer is a real HTTPS server (certificate from a test CA) behind
// toxiproxy, answering {"code":0} until Silence black-holes the proxy.
type apb11Peer struct {
	ca  *apbCA
	srv *httptest.Server
	px  *toxi.Proxy
}

func apb11Start(t *testing.T) *apb11Peer {
	t.Helper()
	ca := apbNewCA(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"code":0}`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.server(t)}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut short are the point
	srv.StartTLS()
	px, err := toxi.New(srv.Listener.Addr().String())
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	return &apb11Peer{ca: ca, srv: srv, px: px}
}

func (p *apb11Peer) silence(t *testing.T) {
	t.Helper()
	if err := p.px.Blackhole(); err != nil {
		t.Fatal(err)
	}
}

func (p *apb11Peer) close() {
	p.px.Close()
	p.srv.Close()
}

// TestAP11SilentTLSPeerBounded: for each prober that handshakes TLS
// (https, grpc over TLS, tls), with timeout 1 s. Pass: before the fault
// the probe is healthy (the path works); during it one probe fails with
// class timeout, not connected, the reason naming the TLS handshake, in
// ≤ 1.1 s of wall time; 1,000 probes in parallel all return, failed with
// class timeout (how long the slowest took is logged: the criterion's
// bound is the single probe's); once the prober and the proxy are closed,
// no goroutine is left (goleak against the goroutines from before the
// test). Then `pulse probe` as a process: exit 2 (connection
// failure), class timeout, its reported latency ≤ 1.1 s.
func TestAP11SilentTLSPeerBounded(t *testing.T) {
	before := goleak.IgnoreCurrent()
	for _, kind := range []probe.Kind{probe.KindHTTP, probe.KindGRPC, probe.KindTLS} {
		t.Run(string(kind), func(t *testing.T) {
			peer := apb11Start(t)
			defer peer.close()
			m := probe.Module{Kind: kind, Timeout: apb11Timeout, TLS: probe.TLSClientConfig{CAPEM: peer.ca.pemCA},
				GRPC: probe.GRPCConfig{TLS: true}}
			target := peer.px.Addr()
			switch kind {
			case probe.KindHTTP:
				target = "https://" + target + "/healthz"
			case probe.KindGRPC:
				// grpc-go's health service is not on this server: a
				// working path answers Unimplemented, which is enough to
				// show the handshake completes before the fault.
			}
			pr, err := probe.New(m)
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			if kind != probe.KindGRPC {
				if r := pr.Probe(context.Background(), target); r.Status != status.Healthy {
					t.Fatalf("before the fault: %v %s", r.Status, r.Reason)
				}
			}
			peer.silence(t)

			start := time.Now()
			r := pr.Probe(context.Background(), target)
			took := time.Since(start)
			t.Logf("%s: one probe of a silent TLS peer: %v [%s] after %v (latency %v): %s", kind, r.Status, r.Class, took.Round(time.Millisecond), r.Latency.Round(time.Millisecond), r.Reason)
			if r.Status != status.Unhealthy || r.Class != status.ClassTimeout || r.Connected {
				t.Fatalf("got %v/%s connected=%v: %s", r.Status, r.Class, r.Connected, r.Reason)
			}
			if !strings.Contains(r.Reason, "TLS handshake") {
				t.Fatalf("the reason does not name the TLS handshake: %q", r.Reason)
			}
			if took > apb11Timeout*11/10 {
				t.Fatalf("took %v > timeout + 10 %% (%v)", took, apb11Timeout*11/10)
			}

			var wg sync.WaitGroup
			var bad, slow atomic.Int64 // slow: over timeout + 10 %, reported
			var worst atomic.Int64
			start = time.Now()
			for range 1000 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					t0 := time.Now()
					r := pr.Probe(context.Background(), target)
					d := time.Since(t0)
					for {
						w := worst.Load()
						if int64(d) <= w || worst.CompareAndSwap(w, int64(d)) {
							break
						}
					}
					if r.Status != status.Unhealthy || r.Class != status.ClassTimeout {
						bad.Add(1)
					}
					if d > apb11Timeout*11/10 {
						slow.Add(1)
					}
				}()
			}
			wg.Wait()
			t.Logf("%s: 1000 parallel probes done in %v; the slowest took %v; %d not a timeout; %d took over timeout + 10 %%",
				kind, time.Since(start).Round(time.Millisecond), time.Duration(worst.Load()).Round(time.Millisecond), bad.Load(), slow.Load())
			if bad.Load() != 0 {
				t.Fatalf("%d of 1000 probes did not fail with class timeout", bad.Load())
			}
		})
	}
	goleak.VerifyNone(t, before)

	t.Run("pulse probe", func(t *testing.T) {
		peer := apb11Start(t)
		defer peer.close()
		peer.silence(t)
		bin := pulseBinary(t)
		caFile := peer.ca.caFile(t)
		start := time.Now()
		res := apbExec(t, 30*time.Second, bin, "probe", "https://"+peer.px.Addr()+"/healthz", "--timeout", apb11Timeout.String(), "--ca", caFile, "--json")
		wall := time.Since(start)
		var out struct {
			Status    string  `json:"status"`
			Class     string  `json:"class"`
			Reason    string  `json:"reason"`
			LatencyMS float64 `json:"latency_ms"`
			ExitCode  int     `json:"exit_code"`
		}
		if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
			t.Fatalf("pulse probe --json: %v\n%s%s", err, res.stdout, res.stderr)
		}
		t.Logf("pulse probe: exit %d, %s [%s] latency %.0fms (process wall %v): %s", res.code, out.Status, out.Class, out.LatencyMS, wall.Round(time.Millisecond), out.Reason)
		if res.code != 2 || out.ExitCode != 2 || out.Class != "timeout" || !strings.Contains(out.Reason, "TLS handshake") {
			t.Fatalf("exit %d, %+v", res.code, out)
		}
		if out.LatencyMS > float64(apb11Timeout.Milliseconds())*1.1 {
			t.Fatalf("latency %.0fms > timeout + 10 %%", out.LatencyMS)
		}
	})
}

// TestAP11Naive runs the seed's dial, tls.DialWithDialer(&net.Dialer{},
// …) with nothing bounding the handshake, against the same silent peer. It
// must fail the criterion: a dial has not returned at timeout + 10 %, and
// of 1,000 such dials every one is still a blocked goroutine then. (The
// goroutines are freed at the end by closing the proxy, which resets the
// connections: the only thing that frees them.)
func TestAP11Naive(t *testing.T) {
	peer := apb11Start(t)
	closed := false
	defer func() {
		if !closed {
			peer.close()
		}
	}()
	peer.silence(t)
	cfg := &tls.Config{RootCAs: peer.ca.pool, ServerName: "localhost"}
	addr := peer.px.Addr()
	g0 := runtime.NumGoroutine()

	var returned atomic.Int64
	var wg sync.WaitGroup
	dial := func() {
		defer wg.Done()
		dialer := &net.Dialer{} // the seed: no Timeout, no deadline
		//pulselint:ignore nettimeout the naive variant replays the seed's anti-pattern on purpose
		c, err := tls.DialWithDialer(dialer, "tcp", addr, cfg)
		if err == nil {
			c.Close()
		}
		returned.Add(1)
	}
	wg.Add(1001)
	go dial()
	time.Sleep(apb11Timeout * 11 / 10)
	oneBlocked := returned.Load() == 0
	for range 1000 {
		go dial()
	}
	time.Sleep(apb11Timeout * 11 / 10)
	blocked := 1001 - returned.Load()
	grown := runtime.NumGoroutine() - g0
	t.Logf("seed: one dial blocked after %v: %v; %d of 1001 dials still blocked %v after they started; goroutines +%d",
		apb11Timeout*11/10, oneBlocked, blocked, apb11Timeout*11/10, grown)

	peer.close() // resets every proxied connection
	closed = true
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the seed's dials did not return even after the peer closed")
	}
	if !oneBlocked || blocked != 1001 || grown < 1000 {
		t.Fatalf("the seed's dial did not stay blocked (one blocked %v, %d blocked, +%d goroutines): the replay does not bite", oneBlocked, blocked, grown)
	}
}
