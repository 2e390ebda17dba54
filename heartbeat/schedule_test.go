package heartbeat_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/wire"
	"go.uber.org/goleak"
)

// fakeMonitor answers beats arriving on one end of a net.Pipe with signed
// ACKs carrying whatever directive the test sets. It runs inside a
// synctest bubble: the schedule is the subject, not the network.
type fakeMonitor struct {
	conn net.Conn
	key  *wire.Key
	mu   sync.Mutex
	dir  wire.Directive
	sent []time.Time // bubble time each beat arrived
}

func (f *fakeMonitor) serve() {
	buf := make([]byte, 1024)
	for {
		n, err := f.conn.Read(buf)
		if err != nil {
			return
		}
		var b wire.Beat
		if wire.DecodeBeat(buf[:n], &b) != nil || !b.Verify(f.key) {
			panic("fake monitor got a bad beat")
		}
		f.mu.Lock()
		f.sent = append(f.sent, time.Now())
		d := f.dir
		f.mu.Unlock()
		a := wire.Ack{KeyID: b.KeyID, Epoch: b.Epoch, Seq: b.Seq, SentAt: b.SentAt, Directive: d}
		p, _ := wire.AppendAck(nil, &a, f.key, b.Service, b.Instance)
		if _, err := f.conn.Write(p); err != nil {
			return
		}
	}
}

func (f *fakeMonitor) set(d wire.Directive) { f.mu.Lock(); f.dir = d; f.mu.Unlock() }
func (f *fakeMonitor) times() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.sent...)
}

// TestIntervalChangeTakesEffectOnNextSend: the monitor answers with a
// 30 s interval, then switches to 10 s; the beat after the first ACK that
// carries 10 s follows its predecessor by 10 s ± jitter, without a
// restart. Fake time (synctest), so the minutes take no time.
func TestIntervalChangeTakesEffectOnNextSend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		key := testKey(t)
		client, server := net.Pipe()
		fm := &fakeMonitor{conn: server, key: key, dir: wire.Directive{Interval: 30 * time.Second, Jitter: time.Second}}
		go fm.serve()
		snd, err := heartbeat.New(heartbeat.Config{
			Service: "api", Instance: "api-1", Target: "monitor:7702", Key: key,
			Interval: 30 * time.Second, Jitter: time.Second, Timeout: 5 * time.Second,
		}, heartbeat.WithDialer(func(context.Context, string, string) (net.Conn, error) { return client, nil }), heartbeat.WithSeed(7))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- snd.Run(ctx) }()

		// Advance fake time in 100 ms steps until the monitor has n beats.
		waitBeats := func(n int, limit time.Duration) []time.Time {
			for waited := time.Duration(0); waited < limit; waited += 100 * time.Millisecond {
				synctest.Wait()
				if ts := fm.times(); len(ts) >= n {
					return ts
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Fatalf("fewer than %d beats after %v", n, limit)
			return nil
		}
		// Three beats at 30 s.
		ts := waitBeats(3, 100*time.Second)
		for i := 1; i < 3; i++ {
			if g := ts[i].Sub(ts[i-1]); g < 29*time.Second || g > 31*time.Second {
				t.Fatalf("gap %d: %v, want 30s ± 1s", i, g)
			}
		}
		// From now on the monitor wants 10 s. The next beat (4) is still
		// on the old schedule because no ACK has said otherwise yet; its
		// ACK carries 10 s, so beat 5 comes 10 s ± 1 s after beat 4.
		fm.set(wire.Directive{Interval: 10 * time.Second, Jitter: time.Second})
		ts = waitBeats(5, 50*time.Second)
		if g := ts[3].Sub(ts[2]); g < 29*time.Second || g > 31*time.Second {
			t.Fatalf("beat 4 came %v after beat 3, want 30s ± 1s", g)
		}
		if g := ts[4].Sub(ts[3]); g < 9*time.Second || g > 11*time.Second {
			t.Fatalf("beat 5 came %v after beat 4, want the new 10s ± 1s", g)
		}
		if st := snd.Stats(); st.Interval != 10*time.Second || st.Directives != 1 {
			t.Fatalf("stats %+v", st)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		server.Close()
	})
}

// TestRandomPhaseAndJitter: senders started together do not beat
// together: first beats spread over the interval, and each gap is the
// interval ± jitter (synctest, in-memory pipes).
func TestRandomPhaseAndJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		key := testKey(t)
		const n = 50
		var fms []*fakeMonitor
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		start := time.Now()
		for range n {
			client, server := net.Pipe()
			fm := &fakeMonitor{conn: server, key: key}
			fms = append(fms, fm)
			go fm.serve()
			snd, err := heartbeat.New(heartbeat.Config{
				Service: "api", Instance: "api-1", Target: "m:1", Key: key, Interval: 10 * time.Second, Jitter: time.Second,
			}, heartbeat.WithDialer(func(context.Context, string, string) (net.Conn, error) { return client, nil }))
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() { defer wg.Done(); snd.Run(ctx) }()
		}
		time.Sleep(55 * time.Second)
		synctest.Wait()
		cancel()
		wg.Wait()
		var buckets [10]int
		for _, fm := range fms {
			ts := fm.times()
			if len(ts) < 5 {
				t.Fatalf("%d beats in 55 s", len(ts))
			}
			buckets[int(ts[0].Sub(start)/time.Second)]++
			for i := 1; i < len(ts); i++ {
				if g := ts[i].Sub(ts[i-1]); g < 9*time.Second || g > 11*time.Second {
					t.Fatalf("gap %v, want 10s ± 1s", g)
				}
			}
			fm.conn.Close()
		}
		for i, c := range buckets {
			if c == 0 || c > 15 { // 5 expected per second of phase
				t.Fatalf("first beats per second of phase: %v (bucket %d)", buckets, i)
			}
		}
	})
}

// TestCancelStopsEveryGoroutine: for each transport, Run returns after
// cancel and leaves no goroutine behind.
func TestCancelStopsEveryGoroutine(t *testing.T) {
	key := testKey(t)
	m := startMonitor(t, key, monitorOpts{udp: true, http: true, grpc: true})
	for _, c := range []heartbeat.Config{
		{Transport: wire.UDP, Target: m.udp, Key: key},
		{Transport: wire.HTTP, Target: m.http, Token: token},
		{Transport: wire.GRPC, Target: m.grpc, Token: token},
	} {
		t.Run(c.Transport.String(), func(t *testing.T) {
			ignore := goleak.IgnoreCurrent()
			c.Service, c.Instance, c.Interval = "api", "api-1", 20*time.Millisecond
			res := newResults()
			c.OnResult = res.add
			snd, err := heartbeat.New(c)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- snd.Run(ctx) }()
			res.waitN(t, 3, 5*time.Second)
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Run did not return within 2s of cancel")
			}
			goleak.VerifyNone(t, ignore)
			if err := snd.Run(context.Background()); err == nil {
				t.Fatal("second Run accepted")
			}
		})
	}
}

// TestForgedAndStaleAcksAreIgnored: an ACK signed with another key, and
// an ACK for a beat that is no longer outstanding, change nothing: the
// beat is retransmitted and finally reported unanswered; the counters say
// why.
func TestForgedAndStaleAcksAreIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		key := testKey(t)
		other, _ := wire.NewKey(1, []byte("another-secret-of-32-bytes-long!"))
		client, server := net.Pipe()
		go func() {
			buf := make([]byte, 1024)
			for {
				n, err := server.Read(buf)
				if err != nil {
					return
				}
				var b wire.Beat
				if wire.DecodeBeat(buf[:n], &b) != nil {
					panic("bad beat")
				}
				// A forged ACK (other secret, same key id) with a directive
				// that would silence the sender, then a correctly signed
				// ACK for a seq that is not outstanding.
				a := wire.Ack{KeyID: 1, Epoch: b.Epoch, Seq: b.Seq, SentAt: b.SentAt, Directive: wire.Directive{Interval: time.Hour}}
				p, _ := wire.AppendAck(nil, &a, other, b.Service, b.Instance)
				server.Write(p)
				a.Seq += 1000
				p, _ = wire.AppendAck(nil, &a, key, b.Service, b.Instance)
				server.Write(p)
			}
		}()
		res := newResults()
		snd, err := heartbeat.New(heartbeat.Config{
			Service: "api", Instance: "api-1", Target: "m:1", Key: key, Interval: 10 * time.Second, OnResult: res.add,
		}, heartbeat.WithDialer(func(context.Context, string, string) (net.Conn, error) { return client, nil }))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- snd.Run(ctx) }()
		time.Sleep(20 * time.Second)
		synctest.Wait()
		cancel()
		<-done
		server.Close()
		rs := res.all()
		if len(rs) == 0 || rs[0].Acked || !errors.Is(rs[0].Err, heartbeat.ErrNoAck) || rs[0].Attempts != 5 {
			t.Fatalf("first beat: %+v; want unanswered after 1 + 4 transmissions", rs)
		}
		st := snd.Stats()
		if st.BadAcks == 0 || st.StaleAcks == 0 || st.Interval != 10*time.Second || st.Acked != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}
