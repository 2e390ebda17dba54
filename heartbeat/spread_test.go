package heartbeat_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/wire"
)

// maxOverMean buckets arrival times in [from, from+span) by width and
// returns the counts and max/mean.
func maxOverMean(times []time.Time, from time.Time, span, width time.Duration) ([]int, float64, int) {
	counts := make([]int, span/width)
	total := 0
	for _, at := range times {
		d := at.Sub(from)
		if d < 0 || d >= span {
			continue
		}
		counts[d/width]++
		total++
	}
	peak := 0
	for _, c := range counts {
		peak = max(peak, c)
	}
	return counts, float64(peak) / (float64(total) / float64(len(counts))), total
}

// memMonitor is an in-memory monitor for synctest: each sender's conn
// records a beat's arrival (bubble time) in Write and answers with a signed
// ACK that the sender's reader picks up from Read.
type memMonitor struct {
	key *wire.Key
	mu  sync.Mutex
	at  []time.Time
}

type memConn struct {
	m      *memMonitor
	in     chan []byte
	closed chan struct{}
	once   sync.Once
}

func (m *memMonitor) conn() *memConn {
	return &memConn{m: m, in: make(chan []byte, 4), closed: make(chan struct{})}
}

func (c *memConn) Write(p []byte) (int, error) {
	var b wire.Beat
	if err := wire.DecodeBeat(p, &b); err != nil || !b.Verify(c.m.key) {
		return 0, fmt.Errorf("bad beat: %v", err)
	}
	c.m.mu.Lock()
	c.m.at = append(c.m.at, time.Now())
	c.m.mu.Unlock()
	a := wire.Ack{KeyID: b.KeyID, Epoch: b.Epoch, Seq: b.Seq, SentAt: b.SentAt}
	ack, _ := wire.AppendAck(nil, &a, c.m.key, b.Service, b.Instance)
	select {
	case c.in <- ack:
	default:
	}
	return len(p), nil
}

func (c *memConn) Read(p []byte) (int, error) {
	select {
	case a := <-c.in:
		return copy(p, a), nil
	case <-c.closed:
		return 0, io.EOF
	}
}

func (c *memConn) Close() error                     { c.once.Do(func() { close(c.closed) }); return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.UDPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.UDPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// TestTenThousandSendersDoNotStorm: 10,000 senders started at the same
// instant. Random phase and per-interval jitter spread them: after the
// first interval the arrival count per 100 ms has max/mean ≤ 1.5 (without
// a random phase every sender would beat within the same few buckets). The
// subject is the schedule, so this runs in a synctest bubble with
// in-memory connections: exact, and light enough for two cores.
// TestManySendersOverLoopback checks the same on real sockets at a scale
// one process can drive.
func TestTenThousandSendersDoNotStorm(t *testing.T) {
	senders := 10000
	if raceEnabled {
		senders = 3000 // the race detector allows 8,128 live goroutines; each sender has 2
	}
	synctest.Test(t, func(t *testing.T) {
		const interval = time.Second
		key := testKey(t)
		mon := &memMonitor{key: key}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		list := make([]*heartbeat.Sender, senders)
		for i := range list {
			c := mon.conn()
			s, err := heartbeat.New(heartbeat.Config{
				Service: "api", Instance: fmt.Sprintf("i-%05d", i), Target: "monitor:7702", Key: key, Interval: interval,
			}, heartbeat.WithDialer(func(context.Context, string, string) (net.Conn, error) { return c, nil }))
			if err != nil {
				t.Fatal(err)
			}
			list[i] = s
		}
		t0 := time.Now() // bubble time does not move while we start them: the same instant
		for _, s := range list {
			wg.Add(1)
			go func() { defer wg.Done(); s.Run(ctx) }()
		}
		time.Sleep(3*interval + time.Millisecond)
		synctest.Wait()
		cancel()
		wg.Wait()
		mon.mu.Lock()
		at := mon.at
		mon.mu.Unlock()
		counts, ratio, total := maxOverMean(at, t0.Add(interval), 2*interval, 100*time.Millisecond)
		t.Logf("%d senders: per-100ms arrivals after the first interval %v; max/mean %.3f", senders, counts, ratio)
		if total < 2*senders*95/100 {
			t.Fatalf("%d beats in two intervals, want ≈ %d", total, 2*senders)
		}
		if ratio > 1.5 {
			t.Fatalf("max/mean = %.3f > 1.5", ratio)
		}
		var retrans uint64
		for _, s := range list {
			retrans += s.Stats().Retransmits
		}
		if retrans != 0 {
			t.Fatalf("%d retransmissions with a monitor that answers at once", retrans)
		}
	})
}

// TestManySendersOverLoopback: the same on real UDP sockets into a real
// receiver, at 1,000 senders started together. Arrival times here also
// carry the receiver's own stalls (GC, other work on this shared 2-core
// machine), which bunch arrivals regardless of the senders, so this test
// asserts "no storm" (max/mean ≤ 2.5; senders without a random phase give
// about 5) and the synctest version asserts the exact 1.5 bound. (10,000
// senders plus the receiver in one process overload Go's run queues, not
// the protocol.)
func TestManySendersOverLoopback(t *testing.T) {
	senders := 1000
	if raceEnabled {
		senders = 500
	}
	if os.Getenv("PULSE_SENDERS") != "" {
		fmt.Sscan(os.Getenv("PULSE_SENDERS"), &senders)
	}
	const interval = time.Second
	key := testKey(t)
	m := startMonitor(t, key, monitorOpts{udp: true, readers: 2})
	list := make([]*heartbeat.Sender, senders)
	for i := range list {
		s, err := heartbeat.New(heartbeat.Config{
			Service: "api", Instance: fmt.Sprintf("i-%05d", i), Target: m.udp, Key: key, Interval: interval,
		})
		if err != nil {
			t.Fatal(err)
		}
		list[i] = s
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for _, s := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			s.Run(ctx)
		}()
	}
	t0 := time.Now()
	close(gate) // all at once
	time.Sleep(3*interval + 100*time.Millisecond)
	cancel()
	wg.Wait()
	m.stop()
	var at []time.Time
	for _, o := range m.sink.all() {
		at = append(at, o.ReceivedAt)
	}
	counts, ratio, total := maxOverMean(at, t0.Add(interval), 2*interval, 100*time.Millisecond)
	t.Logf("%d senders: per-100ms arrivals %v; max/mean %.3f; receiver drops %v", senders, counts, ratio, m.r.Stats().Dropped)
	if total < 2*senders*9/10 {
		t.Fatalf("only %d beats in two intervals, want ≈ %d", total, 2*senders)
	}
	if ratio > 2.5 {
		t.Fatalf("max/mean = %.3f > 2.5: senders beat together", ratio)
	}
	_ = ingest.Passive
}
