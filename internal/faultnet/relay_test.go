package faultnet

import (
	"encoding/binary"
	"math"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer answers every datagram with the same bytes.
func echoServer(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadBuffer(4 << 20)
	c.SetWriteBuffer(4 << 20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c.LocalAddr().String()
}

func startRelay(t *testing.T, cfg Config) *Relay {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(func() { r.Close() })
	return r
}

// exchange sends n numbered datagrams through the relay, paced so that the
// kernel drops none, and returns the numbers that came back in arrival order.
func exchange(t *testing.T, addr string, n int, wait time.Duration) []uint32 {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.UDPConn).SetReadBuffer(4 << 20)
	got := make(chan []uint32)
	go func() {
		var seen []uint32
		buf := make([]byte, 64)
		for {
			c.SetReadDeadline(time.Now().Add(wait))
			k, err := c.Read(buf)
			if err != nil {
				got <- seen
				return
			}
			if k == 4 {
				seen = append(seen, binary.BigEndian.Uint32(buf))
			}
		}
	}()
	var b [4]byte
	for i := range n {
		binary.BigEndian.PutUint32(b[:], uint32(i))
		if _, err := c.Write(b[:]); err != nil {
			t.Fatal(err)
		}
		if i%16 == 15 {
			time.Sleep(300 * time.Microsecond) // pace: loss must come from the relay, not the socket buffer
		}
	}
	return <-got
}

func TestIndependentLoss(t *testing.T) {
	const n, p = 8000, 0.3
	r := startRelay(t, Config{Upstream: echoServer(t), Seed: 1, Up: Faults{Loss: p}})
	got := exchange(t, r.Addr(), n, 300*time.Millisecond)
	st := r.Stats()
	if st.Up.In != n || st.Up.Lost+st.Up.Forwarded != n || uint64(len(got)) != st.Up.Forwarded {
		t.Fatalf("accounting: in %d lost %d fwd %d echoed %d", st.Up.In, st.Up.Lost, st.Up.Forwarded, len(got))
	}
	share := float64(st.Up.Lost) / n
	sd := math.Sqrt(p * (1 - p) / n)
	if math.Abs(share-p) > 4*sd {
		t.Fatalf("loss share %.4f, want %.2f ± %.4f", share, p, 4*sd)
	}
}

func TestBurstLoss(t *testing.T) {
	const n = 8000
	// Mean burst 10 packets, bursts entered about every 100 packets.
	r := startRelay(t, Config{Upstream: echoServer(t), Seed: 2, Up: Faults{BurstEnter: 0.01, BurstExit: 0.1, BurstLoss: 1}})
	got := exchange(t, r.Addr(), n, 300*time.Millisecond)
	received := make([]bool, n)
	for _, s := range got {
		received[s] = true
	}
	var runs, lost int
	for i := range n {
		if !received[i] {
			lost++
			if i == 0 || received[i-1] {
				runs++
			}
		}
	}
	if runs == 0 {
		t.Fatal("no burst happened")
	}
	mean := float64(lost) / float64(runs)
	// Stationary loss share is enter/(enter+exit) = 1/11; mean run length 1/exit = 10.
	if mean < 7 || mean > 13 {
		t.Fatalf("mean loss run %.1f packets, want about 10 (bursty, not independent)", mean)
	}
	if share := float64(lost) / n; share < 0.05 || share > 0.14 {
		t.Fatalf("burst loss share %.3f, want about 0.09", share)
	}
}

func TestDelayJitterDuplicateReorder(t *testing.T) {
	up := echoServer(t)
	r := startRelay(t, Config{Upstream: up, Seed: 3, Down: Faults{Delay: 20 * time.Millisecond, Jitter: 5 * time.Millisecond}})
	c, err := net.Dial("udp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 16)
	for range 20 {
		start := time.Now()
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 15*time.Millisecond || d > 200*time.Millisecond {
			t.Fatalf("round trip %v, want 20ms ± 5ms plus scheduling", d)
		}
	}

	r2 := startRelay(t, Config{Upstream: up, Seed: 4, Up: Faults{Duplicate: 0.5, Reorder: 0.2, ReorderDelay: 3 * time.Millisecond}})
	got := exchange(t, r2.Addr(), 2000, 300*time.Millisecond)
	st := r2.Stats()
	if uint64(len(got)) != 2000+st.Up.Duplicated {
		t.Fatalf("got %d datagrams, want 2000 + %d duplicates", len(got), st.Up.Duplicated)
	}
	if st.Up.Duplicated < 900 || st.Up.Duplicated > 1100 {
		t.Fatalf("duplicated %d of 2000 at p=0.5", st.Up.Duplicated)
	}
	inversions := 0
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			inversions++
		}
	}
	if st.Up.Reordered == 0 || inversions == 0 {
		t.Fatalf("reorder: %d held back, %d inversions seen", st.Up.Reordered, inversions)
	}
}

func TestSetFaultsAndValidation(t *testing.T) {
	r := startRelay(t, Config{Upstream: echoServer(t), Seed: 5})
	if err := r.SetFaults(Faults{Loss: 1}, Faults{}); err != nil {
		t.Fatal(err)
	}
	if got := exchange(t, r.Addr(), 50, 100*time.Millisecond); len(got) != 0 {
		t.Fatalf("blackout let %d through", len(got))
	}
	r.SetFaults(Faults{}, Faults{})
	if got := exchange(t, r.Addr(), 50, 100*time.Millisecond); len(got) != 50 {
		t.Fatalf("after blackout %d of 50", len(got))
	}
	if err := r.SetFaults(Faults{Loss: 1.5}, Faults{}); err == nil {
		t.Fatal("accepted loss 1.5")
	}
	for _, cfg := range []Config{{}, {Upstream: "x", Up: Faults{BurstEnter: 0.1}}, {Upstream: "127.0.0.1:1", Down: Faults{Delay: -1}}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
	r.Close()
	r.Close()
}
