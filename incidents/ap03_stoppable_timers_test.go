package incidents

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/wire"
)

// AP-03 (INC-2023-1152, timer leak). Heartbeat timeouts written as
// `select { case <-ack: case <-time.After(30 * time.Second): }` with a
// goroutine per beat leaked 23,000 goroutines per node.
//
// Replay: a million beat round trips, half of them timing out. 1,000 real
// heartbeat.Senders (UDP transport: signing, ACK matching, retransmission
// with back-off, the beat window) beat once a second for 1,000 seconds of
// simulated time against a monitor that ACKs every even-numbered beat and
// ignores every odd-numbered one (each of those is retransmitted inside its
// window and then given up). The subject is the sender's timers and
// goroutines, not the network, so the run is in a synctest bubble and the
// datagrams travel through an in-memory packet network (aMemNet) that has
// UDP's semantics: whole datagrams, never blocking, dropped when a queue is
// full. Under -race the run is 250 senders × 400 s (100,000 round trips).
//
// Pass criterion: at least 95 % of the scheduled round trips end (the
// rest are in flight at the ends of the run), each exactly once, as ACKed
// (the even ones) or as timed out (the odd ones), except at most one per
// sender ended by the stop; the goroutines running heartbeat code are
// exactly 2 per sender (schedule and reader) at 10 %, 50 % and 100 % of the
// run; the live heap after GC at 100 % is within 1 MiB of the heap at 10 %
// (about 1 byte per round trip in between at full scale, 12 under -race);
// after Run returns no goroutine is left (goleak).

// aMemNet is an in-memory datagram network inside a synctest bubble: one
// "monitor socket" (Inbox) and one socket per dialled sender.
type aMemNet struct {
	Inbox  chan aDatagram
	mu     sync.Mutex
	conns  map[*aMemConn]struct{}
	closed bool
}

type aDatagram struct {
	From *aMemConn
	P    []byte
}

func newAMemNet(queue int) *aMemNet {
	return &aMemNet{Inbox: make(chan aDatagram, queue), conns: map[*aMemConn]struct{}{}}
}

// Dial is a heartbeat.WithDialer function.
func (n *aMemNet) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c := &aMemConn{net: n, in: make(chan []byte, 16), closed: make(chan struct{})}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, net.ErrClosed
	}
	n.conns[c] = struct{}{}
	return c, nil
}

// Reply delivers p to a sender's socket, or drops it if its queue is full.
func (n *aMemNet) Reply(to *aMemConn, p []byte) {
	select {
	case to.in <- p:
	default:
	}
}

// Close closes every socket.
func (n *aMemNet) Close() {
	n.mu.Lock()
	n.closed = true
	conns := n.conns
	n.conns = nil
	n.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// aMemConn is a connected datagram socket of aMemNet.
type aMemConn struct {
	net    *aMemNet
	in     chan []byte
	closed chan struct{}
	once   sync.Once
}

func (c *aMemConn) Read(b []byte) (int, error) {
	select {
	case p := <-c.in:
		return copy(b, p), nil
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *aMemConn) Write(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	select {
	case c.net.Inbox <- aDatagram{c, append([]byte(nil), b...)}:
	default: // a full queue drops, as a socket buffer does
	}
	return len(b), nil
}

func (c *aMemConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *aMemConn) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)} }
func (c *aMemConn) RemoteAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7702} }

// SetReadDeadline: the sender never sets one (its reader runs until the
// socket is closed); refuse rather than silently ignore one.
func (c *aMemConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() {
		return errors.New("aMemConn: read deadlines are not supported")
	}
	return nil
}

// SetWriteDeadline: writes never block here, so any deadline holds.
func (c *aMemConn) SetWriteDeadline(time.Time) error { return nil }
func (c *aMemConn) SetDeadline(t time.Time) error {
	return c.SetReadDeadline(t)
}

// ap03Monitor answers beats on n until ctx ends: even sequence numbers get
// a signed ACK, odd ones nothing. It returns the datagrams it read.
func ap03Monitor(ctx context.Context, n *aMemNet, key *wire.Key) (reads int) {
	var b wire.Beat
	buf := make([]byte, 0, wire.AckSize)
	for {
		select {
		case <-ctx.Done():
			return reads
		case d := <-n.Inbox:
			reads++
			if wire.DecodeBeat(d.P, &b) != nil || !b.Verify(key) || b.Seq%2 == 1 {
				continue
			}
			a := wire.Ack{Code: wire.AckAccepted, KeyID: b.KeyID, Epoch: b.Epoch, Seq: b.Seq, SentAt: b.SentAt}
			out, err := wire.AppendAck(buf[:0], &a, key, b.Service, b.Instance)
			if err != nil {
				continue
			}
			n.Reply(d.From, append([]byte(nil), out...))
		}
	}
}

func ap03Scale() (senders int, seconds int) {
	if aRaceEnabled() {
		return 250, 400
	}
	return 1000, 1000
}

func ap03Heap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func TestAP03StoppableTimers(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	nSenders, seconds := ap03Scale()
	key, err := wire.NewKey(1, []byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	var acked, timedOut, stopped, other atomic.Int64
	var firstOther atomic.Value
	synctest.Test(t, func(t *testing.T) {
		mn := newAMemNet(4096)
		mctx, mstop := context.WithCancel(context.Background())
		mdone := make(chan int, 1)
		go func() { mdone <- ap03Monitor(mctx, mn, key) }()

		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for i := range nSenders {
			s, err := heartbeat.New(heartbeat.Config{
				Service: "api", Instance: fmt.Sprintf("i-%04d", i), Target: "monitor:7702", Key: key,
				Interval: time.Second, Jitter: 50 * time.Millisecond,
				OnResult: func(r heartbeat.Result) {
					switch {
					case r.Acked && r.Seq%2 == 0:
						acked.Add(1)
					case !r.Acked && r.Seq%2 == 1 && (errors.Is(r.Err, heartbeat.ErrNoAck) || errors.Is(r.Err, heartbeat.ErrSuperseded)):
						timedOut.Add(1)
					case !r.Acked && errors.Is(r.Err, context.Canceled):
						stopped.Add(1) // in flight when Run was cancelled
					default:
						if other.Add(1) == 1 {
							firstOther.Store(fmt.Sprintf("seq %d acked %v err %v", r.Seq, r.Acked, r.Err))
						}
					}
				},
			}, heartbeat.WithDialer(mn.Dial), heartbeat.WithSeed(uint64(i)+1))
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() { defer wg.Done(); s.Run(ctx) }()
		}

		type sample struct {
			at    int
			g     int // goroutines running pulse's heartbeat code
			heap  uint64
			beats int64
		}
		var samples []sample
		start := time.Now()
		for _, pct := range []int{10, 50, 100} {
			time.Sleep(time.Until(start.Add(time.Duration(seconds*pct/100) * time.Second)))
			synctest.Wait()
			samples = append(samples, sample{pct, aGoroutines("pulse/heartbeat."), ap03Heap(), acked.Load() + timedOut.Load()})
		}
		cancel()
		wg.Wait()
		mstop()
		reads := <-mdone
		mn.Close()

		for _, s := range samples {
			t.Logf("at %3d%%: %7d round trips ended, %d goroutines in heartbeat code, live heap %.2f MiB", s.at, s.beats, s.g, float64(s.heap)/(1<<20))
		}
		total := acked.Load() + timedOut.Load()
		t.Logf("%d senders: %d round trips: %d ACKed, %d timed out, %d in flight at stop, %d otherwise; the monitor read %d datagrams (retransmissions included)",
			nSenders, total, acked.Load(), timedOut.Load(), stopped.Load(), other.Load(), reads)
		want := int64(nSenders * seconds)
		if total < want*95/100 {
			t.Errorf("%d round trips ended, want ≈ %d", total, want)
		}
		if stopped.Load() > int64(nSenders) {
			t.Errorf("%d beats ended by the stop, want at most one per sender", stopped.Load())
		}
		if other.Load() != 0 {
			t.Errorf("%d beats ended neither ACKed (even) nor timed out (odd); first: %v", other.Load(), firstOther.Load())
		}
		if d := acked.Load() - timedOut.Load(); d < -int64(nSenders) || d > int64(nSenders) {
			t.Errorf("ACKed %d vs timed out %d: want half each", acked.Load(), timedOut.Load())
		}
		if samples[0].g != 2*nSenders || samples[1].g != samples[0].g || samples[2].g != samples[0].g {
			t.Errorf("goroutines in heartbeat code %d, %d, %d at 10/50/100%%: want flat at 2 per sender (schedule, reader)", samples[0].g, samples[1].g, samples[2].g)
		}
		if grow := int64(samples[2].heap) - int64(samples[0].heap); grow > 1<<20 {
			t.Errorf("live heap grew %d bytes from 10%% to 100%% of the run (%d round trips): want flat (≤ 1 MiB)", grow, samples[2].beats-samples[0].beats)
		}
	})
}

// ap03NaiveRoundTrip is the seed's per-beat goroutine: send, wait for the
// answer, hand it over on an unbuffered channel.
func ap03NaiveRoundTrip(conn net.Conn, pkt []byte, ack chan<- bool) {
	conn.Write(pkt)
	buf := make([]byte, 512)
	_, err := conn.Read(buf)
	ack <- err == nil
}

// TestAP03Naive replays the seed's pattern: every beat starts a goroutine
// that sends it and waits for the answer, and the caller gives up with
// `time.After`:
//
//	ack := make(chan bool)
//	go func() { conn.Write(beat); _, err := conn.Read(buf); ack <- err == nil }()
//	select { case ok := <-ack: ...; case <-time.After(timeout): /* timed out */ }
//
// through the same monitor (even beats ACKed, odd ones ignored). Since Go
// 1.23 the runtime collects a timer nobody references, so the timer leak
// of INC-2023-1152 is gone for modules whose go line is ≥ 1.23 (this one
// says 1.26). The failure that remains is the goroutine: every timed-out
// beat strands its goroutine (blocked in Read, and once the socket is
// closed, on the unbuffered send nobody receives). The criterion fails:
// the goroutine count grows by exactly one per timed-out beat.
//
// The old-go-line subtest builds testdata/ap03timers (a module that says
// go 1.22) and shows the timer leak itself: 100,000 answered beats keep
// their never-fired 30 s timers alive under the old semantics, and not under
// GODEBUG=asynctimerchan=0 (what go ≥ 1.23 gets by default).
func TestAP03Naive(t *testing.T) {
	t.Run("per-beat-goroutine", func(t *testing.T) {
		key, err := wire.NewKey(1, []byte(testKey))
		if err != nil {
			t.Fatal(err)
		}
		const senders, beats = 20, 100
		synctest.Test(t, func(t *testing.T) {
			mn := newAMemNet(4096)
			mctx, mstop := context.WithCancel(context.Background())
			mdone := make(chan int, 1)
			go func() { mdone <- ap03Monitor(mctx, mn, key) }()

			var mu sync.Mutex
			var stranded []chan bool // kept only to free them at teardown
			var answered, timedOut atomic.Int64
			g0 := aGoroutines("incidents.ap03NaiveRoundTrip")
			var wg sync.WaitGroup
			for i := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					inst := []byte(fmt.Sprintf("i-%04d", i))
					for seq := uint64(1); seq <= beats; seq++ {
						conn, err := mn.Dial(context.Background(), "udp", "monitor:7702")
						if err != nil {
							t.Error(err)
							return
						}
						pkt, err := wire.AppendBeat(nil, &wire.Beat{Epoch: 1, Seq: seq, Interval: time.Second,
							Service: []byte("api"), Instance: inst}, key)
						if err != nil {
							t.Error(err)
							return
						}
						ack := make(chan bool)
						go ap03NaiveRoundTrip(conn, pkt, ack)
						select {
						case <-ack:
							answered.Add(1)
						//pulselint:ignore timeafter the naive variant replays the seed's anti-pattern on purpose
						case <-time.After(500 * time.Millisecond):
							timedOut.Add(1)
							mu.Lock()
							stranded = append(stranded, ack)
							mu.Unlock()
						}
						time.Sleep(time.Second - 500*time.Millisecond)
					}
				}()
			}
			wg.Wait()
			synctest.Wait()
			g1 := aGoroutines("incidents.ap03NaiveRoundTrip")
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			t.Logf("%d beats: %d answered, %d timed out; per-beat goroutines still there: %d → %d; stacks in use %.1f MiB",
				senders*beats, answered.Load(), timedOut.Load(), g0, g1, float64(ms.StackInuse)/(1<<20))
			if timedOut.Load() != senders*beats/2 || answered.Load() != senders*beats/2 {
				t.Errorf("want half answered, half timed out")
			}
			if int64(g1-g0) != timedOut.Load() {
				t.Errorf("goroutines grew by %d, want exactly one per timed-out beat (%d)", g1-g0, timedOut.Load())
			}

			// Teardown, not part of the seed: close the sockets and take
			// the answers nobody waits for, so the bubble can end.
			mstop()
			<-mdone
			mn.Close()
			for _, c := range stranded {
				<-c
			}
		})
	})

	t.Run("old-go-line", func(t *testing.T) {
		dir := t.TempDir()
		bin := filepath.Join(dir, "ap03timers")
		build := exec.Command("go", "build", "-o", bin, ".")
		build.Dir = filepath.Join("testdata", "ap03timers")
		build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build testdata/ap03timers: %v\n%s", err, out)
		}
		run := func(godebug string) (beats, growth int64) {
			t.Helper()
			cmd := exec.Command(bin, "-beats", "100000")
			cmd.Env = os.Environ()
			if godebug != "" {
				cmd.Env = append(cmd.Env, "GODEBUG="+godebug)
			}
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v", bin, err)
			}
			var answered int64
			if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "beats=%d answered=%d heap_growth=%d", &beats, &answered, &growth); err != nil || answered != beats {
				t.Fatalf("unexpected output %q (%v)", out, err)
			}
			return beats, growth
		}
		n, old := run("")
		_, cur := run("asynctimerchan=0")
		t.Logf("%d answered beats, each with a never-fired time.After(30s): live heap +%.1f MiB under go 1.22 semantics, +%d bytes under go ≥ 1.23 semantics",
			n, float64(old)/(1<<20), cur)
		if old < n*100 {
			t.Errorf("go 1.22 line: heap grew %d bytes for %d beats; want the timers retained (≥ 100 bytes each)", old, n)
		}
		if cur > n*8 {
			t.Errorf("asynctimerchan=0: heap grew %d bytes for %d beats; want the timers collected", cur, n)
		}
	})
}
