package ingest

import (
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

var _ = runtime.GC

func TestUDPBeatObservedAndAcked(t *testing.T) {
	for _, portable := range []bool{false, true} {
		name := map[bool]string{false: "mmsg", true: "xnet"}[portable]
		t.Run(name, func(t *testing.T) {
			g := start(t, func(c *Config) {
				c.portableBatch = portable
				c.Directives = func(svc, inst string) wire.Directive {
					if svc == "api" && inst == "api-1" {
						return wire.Directive{Interval: 5 * time.Second, Jitter: 500 * time.Millisecond, Timeout: time.Second}
					}
					return wire.Directive{}
				}
			})
			c := dial(t, g.addr)
			b := beat(7)
			b.Status, b.Reason, b.Attempt = status.Degraded, wire.ReasonDependency, 1
			b.Trace, _ = wire.ParseTraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			before := time.Now()
			c.send(encode(t, b, g.k))
			a, ok := c.ack(2 * time.Second)
			if !ok {
				t.Fatal("no ACK")
			}
			if !a.Verify(g.k, []byte("api"), []byte("api-1")) {
				t.Fatal("ACK does not verify")
			}
			if a.Code != wire.AckAccepted || a.Epoch != 100 || a.Seq != 7 || a.SentAt != 7*time.Second ||
				a.Interval != 5*time.Second || a.Jitter != 500*time.Millisecond || a.Timeout != time.Second {
				t.Fatalf("ACK %+v", a)
			}
			o := g.sink.waitN(t, 1)[0]
			local := c.c.LocalAddr().(*net.UDPAddr).AddrPort()
			if o.Service != "api" || o.Instance != "api-1" || o.Source != Passive || o.Transport != wire.UDP ||
				o.Epoch != 100 || o.Seq != 7 || o.SentAt != 7*time.Second || o.RTT != 300*time.Microsecond ||
				o.Interval != time.Second || o.Status != status.Degraded || o.Reason != wire.ReasonDependency ||
				o.Attempt != 1 || o.TraceParent != b.Trace || o.Peer != local {
				t.Fatalf("observation %+v (peer want %v)", o, local)
			}
			if o.ReceivedAt.Before(before) || !strings.Contains(o.ReceivedAt.String(), "m=+") {
				t.Fatalf("ReceivedAt %v: want after send and carrying a monotonic reading", o.ReceivedAt)
			}
		})
	}
}

// TestUDPDropsCountedByReason sends one packet of each bad kind and checks
// that each is dropped, counted under its reason, observed never, ACKed
// only when it is a duplicate.
func TestUDPDropsCountedByReason(t *testing.T) {
	g := start(t, nil)
	c := dial(t, g.addr)
	good := encode(t, beat(10), g.k)
	c.send(good)
	if _, ok := c.ack(2 * time.Second); !ok {
		t.Fatal("no ACK for the good beat")
	}

	forged := append([]byte(nil), encode(t, beat(11), g.k)...)
	forged[len(forged)-1] ^= 0xff
	wrongID := encode(t, beat(12), key(t, 9, 0xa1)) // right secret, unknown key id
	wrongSecret := encode(t, beat(13), key(t, 1, 0xb2))
	other := beat(14)
	other.Service = []byte("unknown-svc")
	unknownSvc := encode(t, other, g.k)
	truncated := encode(t, beat(15), g.k)[:50]
	garbage := []byte("GET / HTTP/1.1\r\n\r\n")
	oversized := make([]byte, 600)
	copy(oversized, good)
	huge := make([]byte, 2000) // longer than the read buffer
	oldEpoch := beat(99)
	oldEpoch.Epoch = 99 // a restart epoch older than the current one
	behind := beat(10 + 200)
	for _, p := range [][]byte{forged, wrongID, wrongSecret, unknownSvc, truncated, garbage, oversized, huge} {
		c.send(p)
	}
	c.send(encode(t, behind, g.k))
	if _, ok := c.ack(2 * time.Second); !ok {
		t.Fatal("no ACK for seq 210")
	}
	c.send(encode(t, beat(10), g.k))     // seq 10 is now 200 behind the window top: replay
	c.send(encode(t, oldEpoch, g.k))     // old epoch: replay
	c.send(encode(t, beat(10+200), g.k)) // same seq again: duplicate (ACKed)
	a, ok := c.ack(2 * time.Second)
	if !ok || a.Code != wire.AckDuplicate || a.Seq != 210 {
		t.Fatalf("duplicate ACK: %v %+v", ok, a)
	}
	s := waitStats(t, g.r, func(s Stats) bool { return s.Received[wire.UDP] == 13 })
	want := map[DropReason]uint64{DropAuth: 4, DropMalformed: 2, DropOversized: 2, DropReplay: 2, DropDuplicate: 1}
	for _, r := range DropReasons() {
		if s.Drops(r) != want[r] {
			t.Errorf("drops[%v] = %d, want %d", r, s.Drops(r), want[r])
		}
	}
	if s.Accepted[wire.UDP] != 2 || s.AcksSent != 3 {
		t.Errorf("accepted %d acks %d, want 2 and 3", s.Accepted[wire.UDP], s.AcksSent)
	}
	if _, ok := c.ack(50 * time.Millisecond); ok {
		t.Error("a dropped packet was ACKed")
	}
	obs := g.sink.waitN(t, 2)
	if len(obs) != 2 || obs[0].Seq != 10 || obs[1].Seq != 210 {
		t.Fatalf("observed %+v", obs)
	}
	// Unauthenticated traffic interned nothing.
	if s.Instances != 1 {
		t.Fatalf("instances %d, want 1", s.Instances)
	}
}

// TestOverflowIsCountedAndNotAcked fills the queue while the sink is
// blocked: beats beyond the queue are counted as overflow and get no ACK,
// and the same beat retransmitted later is accepted.
func TestOverflowIsCountedAndNotAcked(t *testing.T) {
	sink := newCollector()
	sink.block = make(chan struct{})
	g := start(t, func(c *Config) { c.Sink = sink; c.QueueSize = 4; c.BatchSize = 4 })
	c := dial(t, g.addr)
	// The first batch goes to the sink (which blocks holding it), the next 4
	// fill the queue, the rest overflow.
	c.send(encode(t, beat(1), g.k))
	waitStats(t, g.r, func(s Stats) bool { return s.SinkBatches == 1 })
	for seq := uint64(2); seq <= 9; seq++ {
		c.send(encode(t, beat(seq), g.k))
		waitStats(t, g.r, func(s Stats) bool { return s.Received[wire.UDP] == seq })
	}
	s := g.r.Stats()
	if s.Drops(DropOverflow) != 4 || s.Accepted[wire.UDP] != 5 || s.QueueDepth != 4 {
		t.Fatalf("overflow %d accepted %d depth %d; want 4, 5, 4", s.Drops(DropOverflow), s.Accepted[wire.UDP], s.QueueDepth)
	}
	acked := map[uint64]bool{}
	for {
		a, ok := c.ack(100 * time.Millisecond)
		if !ok {
			break
		}
		acked[a.Seq] = true
	}
	for seq := uint64(1); seq <= 9; seq++ {
		if acked[seq] != (seq <= 5) {
			t.Errorf("seq %d acked=%v", seq, acked[seq])
		}
	}
	close(sink.block)
	g.sink.waitN(t, 5)
	// A retransmission of an overflowed beat is fresh, not a duplicate.
	c.send(encode(t, beat(9), g.k))
	if a, ok := c.ack(2 * time.Second); !ok || a.Code != wire.AckAccepted || a.Seq != 9 {
		t.Fatalf("retransmitted overflowed beat: %v %+v", ok, a)
	}
	if obs := g.sink.waitN(t, 6); obs[5].Seq != 9 {
		t.Fatalf("last observation %+v", obs[5])
	}
}

func TestInstanceLimitAndSweep(t *testing.T) {
	g := start(t, func(c *Config) { c.MaxInstances = 2 })
	c := dial(t, g.addr)
	for i, inst := range []string{"a", "b", "c"} {
		b := beat(1)
		b.Instance = []byte(inst)
		c.send(encode(t, b, g.k))
		waitStats(t, g.r, func(s Stats) bool { return s.Received[wire.UDP] == uint64(i+1) })
	}
	s := g.r.Stats()
	if s.Drops(DropLimit) != 1 || s.Instances != 2 {
		t.Fatalf("limit %d instances %d", s.Drops(DropLimit), s.Instances)
	}
	if n := g.r.table.sweep(g.r.monoNow() + 1); n != 2 || g.r.Stats().Instances != 0 {
		t.Fatalf("sweep removed %d", n)
	}
}

func TestKeyRotation(t *testing.T) {
	g := start(t, nil)
	c := dial(t, g.addr)
	k2 := key(t, 2, 0xc3)
	c.send(encode(t, beat(1), k2))
	waitStats(t, g.r, func(s Stats) bool { return s.Drops(DropAuth) == 1 })
	ring, _ := wire.NewKeyring(map[string][]*wire.Key{"api": {g.k, k2}})
	g.r.SetKeys(ring)
	c.send(encode(t, beat(2), k2))
	c.send(encode(t, beat(3), g.k))
	obs := g.sink.waitN(t, 2)
	if obs[0].Seq != 2 || obs[1].Seq != 3 {
		t.Fatalf("%+v", obs)
	}
	a, _ := c.ack(time.Second)
	if a.KeyID != 2 || !a.Verify(k2, []byte("api"), []byte("api-1")) {
		t.Fatalf("ACK not signed with the beat's key: %+v", a)
	}
}

func TestSinkPanicIsRecovered(t *testing.T) {
	calls := 0
	g := start(t, func(c *Config) {
		c.Sink = SinkFunc(func(obs []Observation) {
			calls++
			if calls == 1 {
				panic("sink bug")
			}
		})
	})
	c := dial(t, g.addr)
	c.send(encode(t, beat(1), g.k))
	waitStats(t, g.r, func(s Stats) bool { return s.Panics == 1 })
	c.send(encode(t, beat(2), g.k))
	waitStats(t, g.r, func(s Stats) bool { return s.SinkBatches == 2 })
}

func TestNewValidates(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no sink":       {},
		"udp no keys":   {Sink: newCollector(), UDPAddr: "127.0.0.1:0"},
		"short token":   {Sink: newCollector(), Tokens: map[string][]string{"api": {"short"}}},
		"bad service":   {Sink: newCollector(), Tokens: map[string][]string{"a b": {testToken}}},
		"both udp":      {Sink: newCollector(), UDPAddr: "x", UDPConn: &net.UDPConn{}},
		"batch > queue": {Sink: newCollector(), QueueSize: 2, BatchSize: 8},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	r, err := New(Config{Sink: newCollector(), UDPAddr: "256.0.0.1:1", Keys: &wire.Keyring{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(t.Context()); err == nil {
		t.Fatal("Run bound an impossible address")
	}
	if err := r.Run(t.Context()); err == nil {
		t.Fatal("second Run accepted")
	}
}

// fakeBatch is an in-memory batchConn, to measure the reader path's
// allocations without the kernel.
type fakeBatch struct {
	pkts [][]byte
	acks [][]byte
	sent int
}

func (f *fakeBatch) read() (int, error) { return len(f.pkts), nil }
func (f *fakeBatch) packet(i int) ([]byte, netip.AddrPort, bool) {
	return f.pkts[i], netip.MustParseAddrPort("192.0.2.1:4000"), false
}
func (f *fakeBatch) ackBuf(j int) []byte                        { return f.acks[j][:0] }
func (f *fakeBatch) writeAcks(a [][]byte, _ []int) (int, error) { f.sent += len(a); return len(a), nil }

// TestReaderPathAllocatesNothing: decode, authenticate, intern (a known
// instance), replay window, queue, ACK encoding: zero allocations per beat.
func TestReaderPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items on purpose); run without -race")
	}
	k := key(t, 1, 0xa1)
	ring, _ := wire.NewKeyring(map[string][]*wire.Key{"api": {k}})
	r, err := New(Config{Sink: newCollector(), Keys: ring, QueueSize: 1 << 20, BatchSize: 64,
		Directives: func(string, string) wire.Directive { return wire.Directive{Interval: time.Second} }})
	if err != nil {
		t.Fatal(err)
	}
	const batch = 64
	f := &fakeBatch{}
	for i := range batch {
		b := beat(0)
		b.Instance = []byte{'i', byte('a' + i%26), byte('a' + i/26)}
		f.pkts = append(f.pkts, encode(t, b, k))
		f.acks = append(f.acks, make([]byte, 0, wire.AckSize))
	}
	u := &udpReader{bc: f, obs: make([]Observation, 0, batch), acks: make([][]byte, 0, batch), to: make([]int, 0, batch), key: make([]byte, 0, 257)}
	seq := uint64(0)
	next := func() {
		seq++
		for _, p := range f.pkts {
			// Bump the seq and re-sign in place: a fresh beat each round.
			var b wire.Beat
			if err := wire.DecodeBeat(p, &b); err != nil {
				t.Fatal(err)
			}
			b.Seq = seq
			if _, err := wire.AppendBeat(p[:0], &b, k); err != nil {
				t.Fatal(err)
			}
		}
	}
	next()
	r.processUDP(u, batch) // first sight of each instance interns it
	drained := make([]Observation, 0, batch)
	r.q.pop(drained)
	const runs = 200
	allocs := testing.AllocsPerRun(runs, func() {
		next()
		r.processUDP(u, batch)
		r.q.pop(drained)
	})
	s := r.Stats()
	// AllocsPerRun makes one warm-up call besides the measured runs.
	if want := uint64((runs + 2) * batch); s.Accepted[wire.UDP] != want || f.sent != int(want) {
		t.Fatalf("accepted %d, acked %d; want %d fresh beats each accepted and ACKed", s.Accepted[wire.UDP], f.sent, want)
	}
	if allocs != 0 {
		t.Fatalf("%v allocations per batch of %d beats, want 0", allocs, batch)
	}
}

// TestRestartedSenderIsAccepted: a sender that restarts numbers its beats
// from 1 again under a larger epoch; the receiver takes them, and the old
// epoch's beats are replays from then on.
func TestRestartedSenderIsAccepted(t *testing.T) {
	g := start(t, nil)
	c := dial(t, g.addr)
	c.send(encode(t, beat(50), g.k))
	restarted := beat(1)
	restarted.Epoch = 101
	c.send(encode(t, restarted, g.k))
	obs := g.sink.waitN(t, 2)
	if obs[1].Epoch != 101 || obs[1].Seq != 1 {
		t.Fatalf("restarted sender's first beat: %+v", obs[1])
	}
	c.send(encode(t, beat(51), g.k)) // the old run's next beat
	s := waitStats(t, g.r, func(s Stats) bool { return s.Received[wire.UDP] == 3 })
	if s.Drops(DropReplay) != 1 || s.Accepted[wire.UDP] != 2 {
		t.Fatalf("stats %+v", s)
	}
}
