package detection

import (
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// faults is what the network does to memberlist traffic right now: a loss
// probability for every packet and connection attempt, and a set of cut
// off addresses whose traffic (in and out) is all lost.
type faults struct {
	loss atomic.Uint64 // math.Float64bits
	cut  atomic.Pointer[map[string]bool]
	// bytes counts payload bytes put on the wire: every UDP packet sent
	// (lost or not) and every TCP byte either side wrote.
	bytes atomic.Int64
	// udpSent, udpLost, dials and dialsLost count what the faults did.
	udpSent, udpLost, dials, dialsLost atomic.Int64
}

func newFaults() *faults {
	f := &faults{}
	f.cut.Store(&map[string]bool{})
	return f
}

func (f *faults) setLoss(p float64) { f.loss.Store(math.Float64bits(p)) }
func (f *faults) lossP() float64    { return math.Float64frombits(f.loss.Load()) }

func (f *faults) setCut(addrs ...string) {
	m := map[string]bool{}
	for _, a := range addrs {
		m[a] = true
	}
	f.cut.Store(&m)
}

func (f *faults) isCut(a, b string) bool {
	m := *f.cut.Load()
	return m[a] || m[b]
}

// faultTransport wraps one member's NetTransport. Loss is drawn once per
// packet, on the sending side, so each packet is lost with probability p
// whatever its direction. A TCP connection attempt models SYN loss as the
// kernel does: the SYN is retransmitted after 1 s, then 2 s, 4 s, …, each
// copy lost with probability p, and the dial fails when its timeout comes
// first (memberlist's fallback ping dials with what is left of its probe
// interval, so one lost SYN usually fails it).
type faultTransport struct {
	inner *memberlist.NetTransport
	self  string
	f     *faults
	done  chan struct{}
	once  sync.Once

	mu  sync.Mutex
	rnd *rand.Rand
}

var _ memberlist.Transport = (*faultTransport)(nil)

func newFaultTransport(inner *memberlist.NetTransport, self string, f *faults, seed uint64) *faultTransport {
	return &faultTransport{inner: inner, self: self, f: f, done: make(chan struct{}),
		rnd: rand.New(rand.NewPCG(seed, 0x6d6c))}
}

func (t *faultTransport) lose() bool {
	p := t.f.lossP()
	if p <= 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rnd.Float64() < p
}

func (t *faultTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

func (t *faultTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.f.bytes.Add(int64(len(b)))
	t.f.udpSent.Add(1)
	if t.f.isCut(t.self, addr) || t.lose() {
		t.f.udpLost.Add(1)
		return time.Now(), nil // a lost datagram looks sent to its sender
	}
	return t.inner.WriteTo(b, addr)
}

func (t *faultTransport) PacketCh() <-chan *memberlist.Packet { return t.inner.PacketCh() }
func (t *faultTransport) StreamCh() <-chan net.Conn           { return t.inner.StreamCh() }

var errDialTimeout = &timeoutError{}

type timeoutError struct{}

func (*timeoutError) Error() string   { return "dial tcp: i/o timeout (SYN lost)" }
func (*timeoutError) Timeout() bool   { return true }
func (*timeoutError) Temporary() bool { return true }
func (*timeoutError) Unwrap() error   { return os.ErrDeadlineExceeded }

func (t *faultTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	t.f.dials.Add(1)
	start := time.Now()
	rto := time.Second
	next := time.Duration(0) // offset of the next SYN copy
	for {
		if !t.f.isCut(t.self, addr) && !t.lose() {
			break
		}
		next += rto
		rto *= 2
		if next >= timeout {
			t.f.dialsLost.Add(1)
			if !t.wait(start.Add(timeout)) {
				return nil, errors.New("transport shut down")
			}
			return nil, errDialTimeout
		}
		if !t.wait(start.Add(next)) {
			return nil, errors.New("transport shut down")
		}
	}
	c, err := t.inner.DialTimeout(addr, max(timeout-time.Since(start), time.Millisecond))
	if err != nil {
		return nil, err
	}
	return &countConn{Conn: c, n: &t.f.bytes}, nil
}

// wait blocks until the deadline; false if the transport shut down first.
func (t *faultTransport) wait(until time.Time) bool {
	d := time.Until(until)
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-t.done:
		return false
	}
}

func (t *faultTransport) Shutdown() error {
	t.once.Do(func() { close(t.done) })
	return t.inner.Shutdown()
}

// countConn counts the bytes both ends of a connection write: reads on the
// dialing side are the accepting side's writes.
type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}
