package incidents

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/internal/faultnet/toxi"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// AP-07 (INC-2022-307, INC-2023-012, half-open TCP, keepalive too slow).
// HTTP beats reused a keep-alive connection that a firewall had silently
// dropped; the client wrote into it without checking and waited, and the
// instance was taken out although it and the monitor were fine.
//
// Replay (real sockets, real time, toxiproxy): a heartbeat.Sender beats
// every 500 ms (timeout 500 ms) to the pulse daemon, which declares a
// silent instance down within 3 s (detector ceiling 2 s, down_after 1 s). Its connections go
// through two toxiproxy proxies: the first connection through proxy A,
// every later one through proxy B, as a connection pinned to a middlebox
// path whose state is lost while new flows take a healthy one. After 4
// ACKed beats proxy A blackholes (drops everything both ways, closes
// nothing): the established connection is now half-open. Run over HTTP/1.1
// keep-alive and over HTTPS (HTTP/2, with PING health checks).
//
// Pass criterion: the first beat after the blackhole is ACKed on its second
// attempt, on a new connection, within one timeout of leaving; every beat
// is ACKed; the monitor keeps the instance alive throughout (no suspect,
// no down event) and the beats go on over proxy B.

const (
	ap07Interval = 500 * time.Millisecond
	ap07Token    = "edge-token-0123456789abcdef"
)

// ap07Paths routes a client's first connection through proxy A and every
// later one through proxy B.
type ap07Paths struct {
	A, B  *toxi.Proxy
	dials atomic.Int64
}

func newAP07Paths(t *testing.T, upstream string) *ap07Paths {
	t.Helper()
	a, err := toxi.New(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	b, err := toxi.New(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return &ap07Paths{A: a, B: b}
}

func (p *ap07Paths) Dial(ctx context.Context, network, _ string) (net.Conn, error) {
	addr := p.B.Addr()
	if p.dials.Add(1) == 1 {
		addr = p.A.Addr()
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// ap07Daemon starts the monitor; with tlsOn it serves HTTPS (HTTP/2).
func ap07Daemon(t *testing.T, tlsOn bool) (mon *monitorProc, scheme string, pki *aPKI) {
	t.Helper()
	tlsYAML := ""
	scheme = "http"
	if tlsOn {
		pki = newAPKI(t)
		cert, key, _ := pki.IssueFiles(t, t.TempDir(), "monitor")
		tlsYAML = fmt.Sprintf("tls: {cert_file: %q, key_file: %q}\n", cert, key)
		scheme = "https"
	}
	cfg := parseConfig(t, tlsYAML+`
services:
  - name: edge
    register_by_beats: true
    passive:
      interval: 500ms
      jitter: 50ms
      tokens: [{value: `+ap07Token+`}]
    detector: {ceiling: 2s}
    verdict: {down_after: 1s, startup_grace: 1s}
`)
	return startMonitor(t, daemon.Options{Config: cfg}), scheme, pki
}

func TestAP07DeadConnection(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tlsOn bool
	}{{"http1-keepalive", false}, {"https-h2", true}} {
		t.Run(tc.name, func(t *testing.T) {
			mon, scheme, pki := ap07Daemon(t, tc.tlsOn)
			paths := newAP07Paths(t, mon.D.HTTPAddr())
			inst := "edge-" + tc.name

			type ended struct {
				r  heartbeat.Result
				at time.Time
			}
			var mu sync.Mutex
			var results []ended
			acked := make(chan struct{}, 64)
			cfg := heartbeat.Config{
				Service: "edge", Instance: inst, Transport: wire.HTTP, Token: ap07Token,
				Target:   scheme + "://" + mon.D.HTTPAddr(),
				Interval: ap07Interval, Timeout: ap07Interval,
				OnResult: func(r heartbeat.Result) {
					mu.Lock()
					results = append(results, ended{r, time.Now()})
					mu.Unlock()
					if r.Acked {
						select {
						case acked <- struct{}{}:
						default:
						}
					}
				},
			}
			if pki != nil {
				cfg.TLS = pki.ClientTLS()
			}
			snd, err := heartbeat.New(cfg, heartbeat.WithDialer(paths.Dial))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan struct{})
			go func() { defer close(ran); snd.Run(ctx) }()
			defer func() { cancel(); <-ran }()

			for range 4 {
				select {
				case <-acked:
				//pulselint:ignore timeafter the naive variant replays the seed's anti-pattern on purpose
				case <-time.After(10 * time.Second):
					t.Fatalf("no ACK within 10s: %+v", snd.Stats())
				}
			}
			holeAt := time.Now()
			if err := paths.A.Blackhole(); err != nil {
				t.Fatal(err)
			}
			// 8 more beats over the new path: longer than a silent
			// instance takes to be declared down (the detector's ceiling,
			// 2 s, then down_after, 1 s), so a lost beat would show.
			time.Sleep(8 * ap07Interval)
			cancel()
			<-ran

			mu.Lock()
			defer mu.Unlock()
			var first *ended
			notAcked := 0
			for i := range results {
				e := &results[i]
				if !e.r.Acked {
					notAcked++
					t.Errorf("beat %d not ACKed: %v", e.r.Seq, e.r.Err)
				}
				if first == nil && e.r.SentAt.After(holeAt) {
					first = e
				}
			}
			if first == nil {
				t.Fatal("no beat after the blackhole")
			}
			took := first.at.Sub(first.r.SentAt)
			st := snd.Stats()
			v, err := mon.Mon().Instance("edge", inst)
			if err != nil {
				t.Fatal(err)
			}
			evs := aTransitions(mon.Mon(), "edge", inst)
			t.Logf("first beat after the blackhole: seq %d, attempts %d, ended %v after it left (timeout %v); %d beats, %d not ACKed; sender: %d retries, %d connections; dials: %d (1 through A); monitor: %v, events %v",
				first.r.Seq, first.r.Attempts, took.Round(time.Millisecond), ap07Interval, len(results), notAcked, st.Retries, st.ConnsOpened, paths.dials.Load(), v.State, evs)
			if !first.r.Acked || first.r.Attempts != 2 || took > ap07Interval {
				t.Errorf("the first beat after the blackhole: acked %v after %d attempts in %v; want ACKed on the 2nd attempt (a fresh connection) within one timeout (%v)", first.r.Acked, first.r.Attempts, took, ap07Interval)
			}
			if paths.dials.Load() < 2 {
				t.Errorf("no connection was made over proxy B")
			}
			if v.State != monitor.Alive || len(evs) != 1 || evs[0] != "unknown→alive" {
				t.Errorf("monitor: %v (%s), transitions %v; want alive throughout (only unknown→alive)", v.State, v.Reason, evs)
			}
		})
	}
}

// TestAP07Naive sends beats the seed's way, a ticker loop over a plain
// http.Client (keep-alive, no response deadline, no retry, no keepalive
// tuning), through the same two paths and the same blackhole. It must fail
// the criterion: the beat after the blackhole never ends (it waits on the
// half-open connection), no beat follows it, and the monitor declares the
// live instance down.
func TestAP07Naive(t *testing.T) {
	mon, _, _ := ap07Daemon(t, false)
	paths := newAP07Paths(t, mon.D.HTTPAddr())
	tr := &http.Transport{DialContext: paths.Dial}
	client := &http.Client{Transport: tr} // ❌ no deadline anywhere
	defer tr.CloseIdleConnections()
	const inst = "edge-naive"

	var sent, answered atomic.Int64
	var lastAnswer atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		ticker := time.NewTicker(ap07Interval)
		defer ticker.Stop()
		for seq := uint64(1); ; seq++ {
			select {
			case <-ctx.Done(): // teardown only
				return
			case <-ticker.C:
			}
			body, _ := json.Marshal(wire.BeatJSON{Service: "edge", Instance: inst, Epoch: 1, Seq: seq,
				SentAtNS: int64(seq) * int64(ap07Interval), Status: status.Healthy, IntervalMS: wire.DurMS(ap07Interval)})
			req, _ := http.NewRequest(http.MethodPost, "http://"+mon.D.HTTPAddr()+wire.BeatPath, bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+ap07Token)
			sent.Add(1)
			//pulselint:ignore nettimeout the naive variant replays the seed's anti-pattern on purpose
			resp, err := client.Do(req)
			if err != nil {
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answered.Add(1)
			lastAnswer.Store(time.Now().UnixNano())
		}
	}()
	waitFor(t, 10*time.Second, "4 naive beats answered", func() bool { return answered.Load() >= 4 })
	holeAt := time.Now()
	if err := paths.A.Blackhole(); err != nil {
		t.Fatal(err)
	}
	var downAt time.Time
	waitFor(t, 15*time.Second, "the monitor to judge the naive instance", func() bool {
		v, err := mon.Mon().Instance("edge", inst)
		if err == nil && v.State == monitor.Down {
			downAt = time.Now()
			return true
		}
		return false
	})
	v, _ := mon.Mon().Instance("edge", inst)
	t.Logf("seed client: %d beats sent, %d answered (the last %v before the blackhole), none after; %d dial(s); the live instance went down %v after the blackhole: %s",
		sent.Load(), answered.Load(), holeAt.Sub(time.Unix(0, lastAnswer.Load())).Round(time.Millisecond), paths.dials.Load(), downAt.Sub(holeAt).Round(time.Millisecond), v.Reason)
	if paths.dials.Load() != 1 {
		t.Errorf("the seed client dialled %d times: it was supposed to stay on the dead connection", paths.dials.Load())
	}
	// Teardown: closing proxy A ends the stuck request, then the loop.
	cancel()
	paths.A.Close()
	<-loopDone
}
