package ingest

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testToken = "tok-0123456789abcdef"

// collector is a Sink that keeps copies of what it is given.
type collector struct {
	mu    sync.Mutex
	obs   []Observation
	seen  chan struct{}
	block chan struct{} // if non-nil, ObserveBatch waits on it
}

func newCollector() *collector { return &collector{seen: make(chan struct{}, 1)} }

func (c *collector) ObserveBatch(obs []Observation) {
	if c.block != nil {
		<-c.block
	}
	c.mu.Lock()
	c.obs = append(c.obs, obs...)
	c.mu.Unlock()
	select {
	case c.seen <- struct{}{}:
	default:
	}
}

func (c *collector) all() []Observation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Observation(nil), c.obs...)
}

// waitN waits until at least n observations arrived.
func (c *collector) waitN(t *testing.T, n int) []Observation {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		if o := c.all(); len(o) >= n {
			return o
		}
		select {
		case <-c.seen:
		case <-deadline.C:
			t.Fatalf("waited 5s for %d observations, have %d", n, len(c.all()))
		}
	}
}

func key(t testing.TB, id uint16, fill byte) *wire.Key {
	t.Helper()
	k, err := wire.NewKey(id, bytes.Repeat([]byte{fill}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type rig struct {
	r    *Receiver
	sink *collector
	k    *wire.Key
	addr *net.UDPAddr
}

// start runs a Receiver with a UDP socket on loopback; mod adjusts cfg.
func start(t *testing.T, mod func(*Config), opts ...Option) *rig {
	t.Helper()
	k := key(t, 1, 0xa1)
	ring, err := wire.NewKeyring(map[string][]*wire.Key{"api": {k}})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	sink := newCollector()
	cfg := Config{UDPConn: conn, Keys: ring, Sink: sink, Tokens: map[string][]string{"api": {testToken}}, Readers: 1}
	if mod != nil {
		mod(&cfg)
	}
	if cfg.Sink == nil {
		cfg.Sink = sink
	}
	r, err := New(cfg, opts...)
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-r.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	})
	if c, ok := cfg.Sink.(*collector); ok {
		sink = c
	}
	return &rig{r: r, sink: sink, k: k, addr: r.UDPAddr()}
}

func beat(seq uint64) wire.Beat {
	return wire.Beat{
		Status: status.Healthy, Interval: time.Second, Epoch: 100, Seq: seq, SentAt: time.Duration(seq) * time.Second,
		RTT: 300 * time.Microsecond, Service: []byte("api"), Instance: []byte("api-1"),
	}
}

func encode(t testing.TB, b wire.Beat, k *wire.Key) []byte {
	t.Helper()
	p, err := wire.AppendBeat(nil, &b, k)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// client is a UDP socket that sends raw packets and reads ACKs.
type client struct {
	t *testing.T
	c *net.UDPConn
}

func dial(t *testing.T, addr *net.UDPAddr) *client {
	t.Helper()
	c, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c}
}

func (c *client) send(p []byte) {
	c.t.Helper()
	if _, err := c.c.Write(p); err != nil {
		c.t.Fatal(err)
	}
}

// ack reads one ACK, or returns false after wait.
func (c *client) ack(wait time.Duration) (wire.Ack, bool) {
	buf := make([]byte, 256)
	c.c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.c.Read(buf)
	if err != nil {
		return wire.Ack{}, false
	}
	var a wire.Ack
	if err := wire.DecodeAck(buf[:n], &a); err != nil {
		c.t.Fatalf("bad ACK: %v", err)
	}
	a.Signed = append([]byte(nil), a.Signed...)
	a.Tag = append([]byte(nil), a.Tag...)
	return a, true
}

// waitStats polls Stats until cond holds (the counters are updated by the
// reader right after the packets are processed).
func waitStats(t *testing.T, r *Receiver, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := r.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats condition not met in 5s: %+v", s)
		}
		time.Sleep(time.Millisecond)
	}
}
