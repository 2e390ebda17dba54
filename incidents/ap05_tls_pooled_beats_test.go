package incidents

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// AP-05 (INC-2023-0977, protocol-stack latency). HTTPS heartbeats opened a
// new connection per beat and counted the TLS handshake in the heartbeat's
// answer time; during a certificate renewal window handshakes slowed and
// clients reported failures in bulk.
//
// Replay (real TLS, real sockets, real time): the pulse daemon serves HTTPS
// from certificate files; heartbeat.Senders (HTTP transport, defaults
// otherwise) beat through a TCP forwarder that counts the connections the
// server accepts.
//
// pooled: 1,000 beats, 5 ms apart; after 400 beats the server's
// certificate files are replaced by a new certificate (new key, same CA).
// Pass criterion: ≤ 2 connections accepted by the server (1 expected:
// nothing breaks the first) and as many TLS handshakes; every beat ACKed,
// except that up to 5 % may be skipped with ErrBusy: 5 ms is the monitor's
// minimum interval compressed 20 times, and on a loaded 2-core host an
// exchange now and then outlasts two intervals, when the sender skips a
// beat rather than stack sends (by design, AP-06).
//
// rotate-reconnect: 20 beats at the monitor's 100 ms interval, whose
// handshakes are made 150 ms slower (the client's VerifyConnection waits,
// as a cross-DC handshake in a renewal window would be: longer than one
// interval, so the next beat overlaps a reconnection). After 2 beats the
// certificate files are rotated; after 15 (so that the daemon, which looks
// at the files at most once a second, has noticed) every established
// connection is dropped, as a load balancer restart would. Pass criterion:
// all 20 ACKed; the server accepted exactly 2 connections and served the
// rotated certificate on the second; exactly 2 beats report a handshake
// ≥ 150 ms, and their RTT does not include it; every beat's RTT, and the
// RTT the monitor holds for the instance, stays below 150 ms (handshakes
// never reach the detector).

const (
	ap05Beats       = 1000
	ap05Interval    = 5 * time.Millisecond
	ap05RotateAt    = 400
	ap05SlowHello   = 150 * time.Millisecond
	ap05Token       = "edge-token-0123456789abcdef"
	ap05NaiveBeats  = 200
	ap05BeatTimeout = 2 * time.Second
)

type ap05Env struct {
	mon     *monitorProc
	counter *aConnCounter
	pki     *aPKI
	dir     string
	serial1 int64
}

func ap05Start(t *testing.T) *ap05Env {
	t.Helper()
	e := &ap05Env{pki: newAPKI(t), dir: t.TempDir()}
	cert, key, serial := e.pki.IssueFiles(t, e.dir, "monitor")
	e.serial1 = serial
	cfg := parseConfig(t, fmt.Sprintf(`
tls: {cert_file: %q, key_file: %q}
services:
  - name: edge
    register_by_beats: true
    passive:
      interval: 100ms
      jitter: 10ms
      tokens: [{value: %s}]
`, cert, key, ap05Token))
	e.mon = startMonitor(t, daemon.Options{Config: cfg})
	e.counter = newAConnCounter(t, e.mon.D.HTTPAddr())
	return e
}

// ap05Send runs a sender until beats 1..n have ended; at(k) is called when
// k beats have ended (it may rotate, drop, wait). It returns the results
// by sequence number and the sender's final stats.
func ap05Send(t *testing.T, e *ap05Env, inst string, interval time.Duration, clientTLS *tls.Config, n int, at func(k int)) (map[uint64]heartbeat.Result, heartbeat.Stats) {
	t.Helper()
	results := make(chan heartbeat.Result, n+64)
	snd, err := heartbeat.New(heartbeat.Config{
		Service: "edge", Instance: inst, Transport: wire.HTTP, Token: ap05Token,
		Target: "https://" + e.counter.Addr(), TLS: clientTLS,
		// The monitor asks for 100 ms in its ACKs; Min/MaxInterval keep
		// the sender at its own interval (5 ms: 1,000 beats in 5 s).
		Interval: interval, MinInterval: interval, MaxInterval: interval,
		Timeout: ap05BeatTimeout,
		OnResult: func(r heartbeat.Result) {
			select {
			case results <- r:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); snd.Run(ctx) }()
	defer func() { cancel(); <-ran }()
	bySeq := map[uint64]heartbeat.Result{}
	deadline := time.After(60 * time.Second)
	for len(bySeq) < n {
		select {
		case r := <-results:
			if r.Seq > uint64(n) {
				continue
			}
			bySeq[r.Seq] = r
			at(len(bySeq))
		case <-deadline:
			t.Fatalf("only %d of %d beats ended within 60s", len(bySeq), n)
		}
	}
	cancel()
	<-ran
	return bySeq, snd.Stats()
}

// ap05Serials records the leaf certificate serial of every handshake a
// client config makes; slow delays each handshake.
func ap05Serials(cfg *tls.Config, slow time.Duration) func() []int64 {
	var mu sync.Mutex
	var served []int64
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		mu.Lock()
		served = append(served, cs.PeerCertificates[0].SerialNumber.Int64())
		mu.Unlock()
		time.Sleep(slow)
		return nil
	}
	return func() []int64 {
		mu.Lock()
		defer mu.Unlock()
		return append([]int64(nil), served...)
	}
}

func TestAP05TLSPooledBeats(t *testing.T) {
	t.Run("pooled", func(t *testing.T) {
		e := ap05Start(t)
		clientTLS := e.pki.ClientTLS()
		serials := ap05Serials(clientTLS, 0)
		bySeq, st := ap05Send(t, e, "edge-1", ap05Interval, clientTLS, ap05Beats, func(k int) {
			if k == ap05RotateAt {
				e.pki.IssueFiles(t, e.dir, "monitor")
			}
		})
		acked, busy := 0, 0
		for seq := uint64(1); seq <= ap05Beats; seq++ {
			switch r := bySeq[seq]; {
			case r.Acked:
				acked++
			case errors.Is(r.Err, heartbeat.ErrBusy):
				busy++
			default:
				t.Errorf("beat %d not ACKed: %v", seq, r.Err)
			}
		}
		if busy > ap05Beats/20 {
			t.Errorf("%d beats skipped as busy, want ≤ 5%%", busy)
		}
		n := e.counter.Accepted()
		t.Logf("%d beats: %d ACKed; the server accepted %d connections; sender: %d connections, %d TLS handshakes, %d retries, %d skipped; certificates served %v",
			ap05Beats, acked, n, st.ConnsOpened, st.TLSHandshakes, st.Retries, st.Skipped, serials())
		if n < 1 || n > 2 || int64(st.TLSHandshakes) != n {
			t.Errorf("the server accepted %d connections and the sender made %d handshakes for %d beats, want ≤ 2 and as many", n, st.TLSHandshakes, ap05Beats)
		}
	})

	t.Run("rotate-reconnect", func(t *testing.T) {
		e := ap05Start(t)
		clientTLS := e.pki.ClientTLS()
		serials := ap05Serials(clientTLS, ap05SlowHello)
		const n = 20
		var serial2 int64
		bySeq, st := ap05Send(t, e, "edge-2", 100*time.Millisecond, clientTLS, n, func(k int) {
			switch k {
			case 2:
				_, _, serial2 = e.pki.IssueFiles(t, e.dir, "monitor")
			case 15:
				e.counter.CloseConns()
			}
		})
		slow := 0
		var maxRTT time.Duration
		for seq := uint64(1); seq <= n; seq++ {
			r := bySeq[seq]
			if !r.Acked {
				t.Errorf("beat %d not ACKed: %v", seq, r.Err)
			}
			maxRTT = max(maxRTT, r.RTT)
			if r.Handshake > 0 {
				t.Logf("beat %d reports a handshake of %v (reused %v), RTT %v", seq, r.Handshake, r.Reused, r.RTT)
			}
			if r.Handshake >= ap05SlowHello {
				slow++
			}
		}
		v, err := e.mon.Mon().Instance("edge", "edge-2")
		if err != nil {
			t.Fatal(err)
		}
		seen := serials()
		t.Logf("%d beats: %d with a full handshake; sender: %d TLS handshakes (%v in total); certificates served %v (rotated to %d); max beat RTT %v; the monitor's RTT for the instance %v; the server accepted %d connections",
			n, slow, st.TLSHandshakes, st.HandshakeTime, seen, serial2, maxRTT, v.RTT, e.counter.Accepted())
		if e.counter.Accepted() != 2 {
			t.Errorf("the server accepted %d connections, want 2 (the first, one after the drop)", e.counter.Accepted())
		}
		if len(seen) < 2 || seen[0] != e.serial1 || seen[1] != serial2 {
			t.Errorf("certificates served %v, want %d and then the rotated %d", seen, e.serial1, serial2)
		}
		if slow != 2 {
			t.Errorf("%d beats report a full (≥ %v) handshake, want 2", slow, ap05SlowHello)
		}
		if maxRTT >= ap05SlowHello {
			t.Errorf("a beat's RTT was %v: handshake time leaked into the answer time", maxRTT)
		}
		if v.RTT <= 0 || v.RTT >= ap05SlowHello {
			t.Errorf("the monitor's RTT for the instance is %v, want 0 < RTT < %v (no handshake in it)", v.RTT, ap05SlowHello)
		}
	})
}

// TestAP05Naive sends beats the seed's way, a new HTTPS connection per beat
// with the whole exchange timed as the beat's answer time, to the same
// daemon through the same counting forwarder. It must fail the criterion:
// one TLS connection per beat (200 beats, 200 connections, not ≤ 2), and
// answer times that include the handshake.
func TestAP05Naive(t *testing.T) {
	e := ap05Start(t)
	var total time.Duration
	var answers []time.Duration
	for seq := 1; seq <= ap05NaiveBeats; seq++ {
		body, _ := json.Marshal(wire.BeatJSON{Service: "edge", Instance: "edge-naive", Epoch: 1, Seq: uint64(seq),
			SentAtNS: int64(seq) * int64(ap05Interval), Status: status.Healthy, IntervalMS: wire.DurMS(ap05Interval)})
		// ❌ the seed: a fresh client per beat, no connection reuse.
		tr := &http.Transport{TLSClientConfig: e.pki.ClientTLS(), DisableKeepAlives: true}
		client := &http.Client{Transport: tr, Timeout: ap05BeatTimeout}
		req, err := http.NewRequest(http.MethodPost, "https://"+e.counter.Addr()+wire.BeatPath, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+ap05Token)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("naive beat %d: %v", seq, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(start) // the seed's "RTT": handshake included
		tr.CloseIdleConnections()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("naive beat %d: %s", seq, resp.Status)
		}
		total += d
		answers = append(answers, d)
		time.Sleep(ap05Interval)
	}
	n := e.counter.Accepted()
	t.Logf("%d naive beats: %d connections accepted by the server, mean answer time %v (p99 %v), handshake included",
		ap05NaiveBeats, n, total/ap05NaiveBeats, quantile(answers, 0.99))
	if n != ap05NaiveBeats {
		t.Errorf("%d connections for %d naive beats, want one per beat", n, ap05NaiveBeats)
	}
	if n <= 2 {
		t.Errorf("the naive sender stayed within 2 connections: the replay does not bite")
	}
}
