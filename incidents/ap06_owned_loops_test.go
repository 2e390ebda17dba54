package incidents

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/fb4b1dcc/pulse/detector/sim"
	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// AP-06 (INC-2021-089, INC-2022-144, goroutine leak + clock drift). The
// seed's heartbeat loop, `ticker := time.NewTicker(30 * time.Second); for
// range ticker.C { sendHeartbeat() }`, had no exit (the goroutine outlived
// its owner), no timeout on the send (a blocked send stalled every later
// beat) and no drift check.
//
// Replay, in three parts:
//
// blocked-send (synctest: the subject is the schedule): a
// heartbeat.Sender (HTTP transport, 1 s interval, 100 ms jitter, 8 s
// timeout) beats to pulse's real beat endpoint (ingest.Receiver, served on
// an in-memory listener of net.Pipe connections). Before beat 5 its pooled
// connection stalls for exactly three intervals (writes block). Pass
// criterion: every beat leaves on schedule (each gap within interval ± 2 ×
// jitter: the schedule is not delayed), beats 6–8 are answered at once on
// another connection, beat 5 is answered when the stall ends (3 s after it
// left), no beat is late or skipped. Then, with a send stalled again, the
// context is cancelled: Run returns at once (within one interval) and every
// goroutine the sender started is gone one interval later.
//
// cancel (real sockets, real time, UDP, HTTP and gRPC against the pulse
// daemon): after a few ACKed beats at a 200 ms interval the context is
// cancelled. Pass criterion: Run returns within one interval and no
// goroutine it started (nor any connection's goroutine on either side) is
// left after one interval.
//
// clock-step (detector/sim's clock-step scenario, 40 instance-hours): the
// wall clock jumps +1 h and then −1 h. Pass criterion: pulse's adaptive
// detector, fed the monotonic clock as the monitor feeds it, makes no
// false suspicion and still detects every crash.

const (
	ap06Interval = time.Second
	ap06Jitter   = 100 * time.Millisecond
	ap06Token    = "api-token-0123456789abcdef"
	ap06StallAt  = 5
)

// ap06Net is an in-memory stream network inside a synctest bubble: a
// net.Listener whose connections come from Dial (net.Pipe pairs). Every
// dialled client end can be stalled: its writes wait until released.
type ap06Net struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex
	dialed []*ap06Conn
}

func newAP06Net() *ap06Net {
	return &ap06Net{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (n *ap06Net) Accept() (net.Conn, error) {
	select {
	case c := <-n.conns:
		return c, nil
	case <-n.closed:
		return nil, net.ErrClosed
	}
}

func (n *ap06Net) Close() error {
	n.once.Do(func() { close(n.closed) })
	return nil
}

func (n *ap06Net) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7700} }

// Dial connects a new client to the listener.
func (n *ap06Net) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case n.conns <- server:
	case <-n.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c := &ap06Conn{Conn: client, closed: make(chan struct{})}
	n.mu.Lock()
	n.dialed = append(n.dialed, c)
	n.mu.Unlock()
	return c, nil
}

// Dialed returns the client ends dialled so far.
func (n *ap06Net) Dialed() []*ap06Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.dialed)
}

type ap06Conn struct {
	net.Conn
	armed  atomic.Int64                  // a stall of this length begins at the next write
	stall  atomic.Pointer[chan struct{}] // set: writes wait until it is closed
	closed chan struct{}
	once   sync.Once
}

func (c *ap06Conn) Write(b []byte) (int, error) {
	if d := time.Duration(c.armed.Swap(0)); d > 0 {
		ch := make(chan struct{})
		c.stall.Store(&ch)
		time.AfterFunc(d, func() { c.stall.Store(nil); close(ch) })
	}
	if ch := c.stall.Load(); ch != nil {
		select {
		case <-*ch:
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	return c.Conn.Write(b)
}

func (c *ap06Conn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// Stall makes the connection's next write, and the writes after it,
// block for d from that write on.
func (c *ap06Conn) Stall(d time.Duration) { c.armed.Store(int64(d)) }

// ap06Receiver runs pulse's beat endpoint on n; arrivals[seq] is when the
// sink got each beat.
type ap06Receiver struct {
	mu       sync.Mutex
	arrivals map[uint64]time.Time
	cancel   context.CancelFunc
	done     chan error
}

func startAP06Receiver(t *testing.T, n *ap06Net) *ap06Receiver {
	t.Helper()
	r := &ap06Receiver{arrivals: map[uint64]time.Time{}, done: make(chan error, 1)}
	recv, err := ingest.New(ingest.Config{
		HTTPListener: n,
		Tokens:       map[string][]string{"api": {ap06Token}},
		Sink: ingest.SinkFunc(func(obs []ingest.Observation) {
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, o := range obs {
				r.arrivals[o.Seq] = time.Now()
			}
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- recv.Run(ctx) }()
	return r
}

func (r *ap06Receiver) stop(t *testing.T) {
	r.cancel()
	if err := <-r.done; err != nil {
		t.Errorf("ingest Run: %v", err)
	}
}

func TestAP06OwnedLoops(t *testing.T) {
	t.Run("blocked-send", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			n := newAP06Net()
			recv := startAP06Receiver(t, n)
			synctest.Wait()
			// The sender's goroutines, its connections' and the server's
			// goroutines for them.
			senderGs := func() int {
				return aGoroutines("pulse/heartbeat.", "net/http.(*persistConn)", "net/http.(*conn).serve")
			}
			base := senderGs()

			var mu sync.Mutex
			results := map[uint64]heartbeat.Result{}
			ended := map[uint64]time.Time{}
			snd, err := heartbeat.New(heartbeat.Config{
				Service: "api", Instance: "api-1", Transport: wire.HTTP, Target: "http://monitor:7700", Token: ap06Token,
				Interval: ap06Interval, Jitter: ap06Jitter, Timeout: 8 * time.Second,
				OnResult: func(r heartbeat.Result) {
					mu.Lock()
					defer mu.Unlock()
					results[r.Seq], ended[r.Seq] = r, time.Now()
					switch r.Seq {
					case ap06StallAt - 1:
						// The pooled connection stalls at the next beat.
						n.Dialed()[0].Stall(3 * ap06Interval)
					case 12:
						// Every connection stalls: beat 13 will be stuck
						// when the context is cancelled.
						for _, c := range n.Dialed() {
							c.Stall(time.Hour)
						}
					}
				},
			}, heartbeat.WithDialer(n.Dial), heartbeat.WithSeed(6))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan struct{})
			go func() { defer close(ran); snd.Run(ctx) }()

			// 12 beats, then a second stall; cancel while it holds beat 13.
			for {
				time.Sleep(10 * time.Millisecond)
				mu.Lock()
				_, done := results[12]
				mu.Unlock()
				if done {
					break
				}
			}
			time.Sleep(ap06Interval + ap06Interval/2) // beat 13 is now stuck
			running := senderGs() - base
			cancelAt := time.Now()
			cancel()
			<-ran
			returned := time.Since(cancelAt)
			time.Sleep(ap06Interval)
			synctest.Wait()
			left := senderGs() - base
			st := snd.Stats()

			mu.Lock()
			defer mu.Unlock()
			var sent []time.Time
			for seq := uint64(1); seq <= 12; seq++ {
				r, ok := results[seq]
				if !ok || !r.Acked {
					t.Fatalf("beat %d: %+v", seq, r)
				}
				sent = append(sent, r.SentAt)
			}
			for i := 1; i < len(sent); i++ {
				gap := sent[i].Sub(sent[i-1])
				if gap < ap06Interval-2*ap06Jitter || gap > ap06Interval+2*ap06Jitter {
					t.Errorf("beat %d left %v after beat %d: the schedule moved", i+1, gap, i)
				}
			}
			if r, ok := results[13]; !ok || r.Acked || r.Err == nil {
				t.Errorf("beat 13 (stuck at cancel): %+v; want it ended by the cancel, with an error", r)
			}
			stuck := ended[ap06StallAt].Sub(results[ap06StallAt].SentAt)
			if stuck < 3*ap06Interval-ap06Jitter || stuck > 3*ap06Interval+ap06Jitter {
				t.Errorf("beat %d ended %v after it left, want ≈ 3 intervals (the stall)", ap06StallAt, stuck)
			}
			for seq := uint64(ap06StallAt + 1); seq <= ap06StallAt+3; seq++ {
				if d := ended[seq].Sub(results[seq].SentAt); d != 0 {
					t.Errorf("beat %d, sent during the stall, ended %v after it left, want at once", seq, d)
				}
			}
			t.Logf("beat %d stuck %v; beats %d–%d answered at once; %d late, %d skipped, %d connections; cancel with beat 13 stuck: Run returned after %v, goroutines (sender, its connections, server side of them) %d before, %d one interval after",
				ap06StallAt, stuck, ap06StallAt+1, ap06StallAt+3, st.Late, st.Skipped, st.ConnsOpened, returned, running, left)
			if running == 0 {
				t.Fatal("no sender goroutine found while running: the count is broken")
			}
			if st.Late != 0 || st.Skipped != 0 {
				t.Errorf("%d beats late, %d skipped, want 0", st.Late, st.Skipped)
			}
			if returned > ap06Interval {
				t.Errorf("Run returned %v after cancel, want within one interval", returned)
			}
			if left != 0 {
				buf := make([]byte, 1<<16)
				t.Errorf("%d goroutines left one interval after Run returned:\n%s", left, buf[:runtime.Stack(buf, true)])
			}
			recv.stop(t)
		})
	})

	t.Run("cancel", func(t *testing.T) {
		cfg := parseConfig(t, `
services:
  - name: api
    register_by_beats: true
    passive:
      interval: 200ms
      jitter: 20ms
      keys: [{id: 1, secret: {value: %KEY%}}]
      tokens: [{value: `+ap06Token+`}]
`)
		mon := startMonitor(t, daemon.Options{Config: cfg})
		for _, tc := range []struct {
			tr     wire.Transport
			target string
		}{
			{wire.UDP, mon.D.UDPAddr()},
			{wire.HTTP, mon.Base},
			{wire.GRPC, mon.D.GRPCAddr()},
		} {
			t.Run(tc.tr.String(), func(t *testing.T) {
				baseline := aSettledBaseline(t)
				interval := 200 * time.Millisecond
				acked := make(chan struct{}, 64)
				c := heartbeat.Config{Service: "api", Instance: "cancel-" + tc.tr.String(), Transport: tc.tr, Target: tc.target,
					Interval: interval, OnResult: func(r heartbeat.Result) {
						if r.Acked {
							select {
							case acked <- struct{}{}:
							default:
							}
						}
					}}
				if tc.tr == wire.UDP {
					k, err := wire.NewKey(1, []byte(testKey))
					if err != nil {
						t.Fatal(err)
					}
					c.Key = k
				} else {
					c.Token = ap06Token
				}
				snd, err := heartbeat.New(c)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				ran := make(chan error, 1)
				go func() { ran <- snd.Run(ctx) }()
				for range 3 {
					select {
					case <-acked:
					//pulselint:ignore timeafter the naive variant replays the seed's anti-pattern on purpose
					case <-time.After(5 * time.Second):
						cancel()
						<-ran
						t.Fatalf("no ACK within 5s: %+v", snd.Stats())
					}
				}
				cancelAt := time.Now()
				cancel()
				if err := <-ran; err != nil {
					t.Errorf("Run: %v", err)
				}
				returned := time.Since(cancelAt)
				var leaked error
				for {
					if leaked = goleak.Find(baseline); leaked == nil || time.Since(cancelAt) > interval {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				gone := time.Since(cancelAt)
				t.Logf("%v: Run returned %v after cancel; goroutines gone after %v", tc.tr, returned, gone)
				if returned > interval {
					t.Errorf("Run returned %v after cancel, want within one interval (%v)", returned, interval)
				}
				if leaked != nil {
					t.Errorf("goroutines left one interval after cancel: %v", leaked)
				}
			})
		}
	})

	t.Run("clock-step", func(t *testing.T) {
		mistakes, crashes, hours := ap06ClockStep(t, false)
		t.Logf("adaptive on the monotonic clock: %d false suspicions in %.0f instance-hours with wall-clock steps of +1 h and −1 h; %d crashes detected", mistakes, hours, crashes)
		if mistakes != 0 {
			t.Errorf("%d false suspicions, want 0", mistakes)
		}
		if crashes == 0 {
			t.Errorf("no crash detected: the run judged nothing")
		}
	})
}

// ap06ClockStep runs the simulator's clock-step scenario for pulse's
// adaptive detector, fed the monotonic clock (wall=false) as the monitor
// feeds it, or the wall clock.
func ap06ClockStep(t *testing.T, wall bool) (mistakes, crashes int, hours float64) {
	t.Helper()
	sc, ok := sim.ScenarioByName("clock-step")
	if !ok {
		t.Fatal("no clock-step scenario in detector/sim")
	}
	var adaptive *sim.Kind
	for _, k := range sim.Kinds() {
		if k.Name == "adaptive" {
			adaptive = k
		}
	}
	res, err := sim.Run(context.Background(), sim.Config{Seed: 6, InstanceHours: 40, Scenarios: []*sim.Scenario{sc}, Kinds: []*sim.Kind{adaptive}, WallClock: wall})
	if err != nil {
		t.Fatal(err)
	}
	q := res.Scenarios[0].Curves[0].Default
	return q.Mistakes, q.Crashes, q.AliveHours
}

// TestAP06Naive runs the seed's loop through the same three parts:
//
//	ticker := time.NewTicker(interval)
//	for range ticker.C { sendHeartbeat() } // no exit, no timeout
//
// blocked-send: the same stall before beat 5; the criterion fails: the
// loop sends nothing while beat 5 is stuck, so the next beat leaves ≈ 3
// intervals later (the ticks in between are dropped).
// cancel: cancelling the owner's context does nothing; one interval later
// the loop is still there and still sending.
// clock-step: the same detector fed the wall clock (as a check on
// timestamps stored as wall time does) makes false suspicions.
func TestAP06Naive(t *testing.T) {
	t.Run("blocked-send", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			n := newAP06Net()
			recv := startAP06Receiver(t, n)
			tr := &http.Transport{DialContext: n.Dial}
			client := &http.Client{Transport: tr} // ❌ no timeout
			var sent []time.Time
			seq := uint64(0)
			sendHeartbeat := func() {
				seq++
				sent = append(sent, time.Now())
				body, _ := json.Marshal(wire.BeatJSON{Service: "api", Instance: "api-naive", Epoch: 1, Seq: seq, Status: status.Healthy, IntervalMS: 1000})
				req, _ := http.NewRequest(http.MethodPost, "http://monitor:7700"+wire.BeatPath, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+ap06Token)
				//pulselint:ignore nettimeout the naive variant replays the seed's anti-pattern on purpose
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if seq == ap06StallAt-1 {
					n.Dialed()[0].Stall(3 * ap06Interval)
				}
			}
			ticker := time.NewTicker(ap06Interval)
			for range ticker.C {
				sendHeartbeat()
				if seq == 12 {
					break
				}
			}
			ticker.Stop()
			var worst time.Duration
			for i := 1; i < len(sent); i++ {
				worst = max(worst, sent[i].Sub(sent[i-1]))
			}
			t.Logf("seed loop: beat %d left %v after beat %d; largest gap %v", ap06StallAt+1, sent[ap06StallAt].Sub(sent[ap06StallAt-1]), ap06StallAt, worst)
			if worst < 3*ap06Interval {
				t.Errorf("largest gap between beats %v: the stalled send did not delay the schedule; the replay does not bite", worst)
			}
			tr.CloseIdleConnections()
			recv.stop(t)
		})
	})

	t.Run("cancel", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			n := newAP06Net()
			recv := startAP06Receiver(t, n)
			tr := &http.Transport{DialContext: n.Dial}
			client := &http.Client{Transport: tr}
			var beats atomic.Int64
			var teardown atomic.Bool
			ctx, cancel := context.WithCancel(context.Background())
			_ = ctx // ❌ the seed's loop never looks at it
			sendHeartbeat := func() {
				if teardown.Load() {
					runtime.Goexit() // teardown only: the seed's loop has no way out
				}
				body, _ := json.Marshal(wire.BeatJSON{Service: "api", Instance: "api-naive", Epoch: 1, Seq: uint64(beats.Add(1)), Status: status.Healthy, IntervalMS: 1000})
				req, _ := http.NewRequest(http.MethodPost, "http://monitor:7700"+wire.BeatPath, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+ap06Token)
				//pulselint:ignore nettimeout the naive variant replays the seed's anti-pattern on purpose
				if resp, err := client.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			exited := make(chan struct{})
			go func() {
				defer close(exited)
				//pulselint:ignore tickerstop the naive variant replays the seed's anti-pattern on purpose
				ticker := time.NewTicker(ap06Interval)
				//pulselint:ignore tickerstop the naive variant replays the seed's anti-pattern on purpose
				for range ticker.C { // ❌ no exit
					sendHeartbeat()
				}
			}()
			time.Sleep(3*ap06Interval + ap06Interval/2)
			cancel()
			before := beats.Load()
			time.Sleep(2 * ap06Interval)
			after := beats.Load()
			alive := true
			select {
			case <-exited:
				alive = false
			default:
			}
			t.Logf("seed loop: %d beats before cancel, %d in the two intervals after it; loop still running: %v", before, after-before, alive)
			if !alive || after == before {
				t.Errorf("the seed's loop stopped on cancel: the replay does not bite")
			}
			teardown.Store(true)
			<-exited
			tr.CloseIdleConnections()
			recv.stop(t)
		})
	})

	t.Run("clock-step", func(t *testing.T) {
		mistakes, _, hours := ap06ClockStep(t, true)
		t.Logf("adaptive on the wall clock: %d false suspicions in %.0f instance-hours", mistakes, hours)
		if mistakes == 0 {
			t.Errorf("no false suspicion on the wall clock: the replay does not bite")
		}
	})
}
