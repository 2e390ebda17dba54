package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/fb4b1dcc/pulse/status"
)

// recorder collects the phase timestamps of one attempt. Dials run on
// transport goroutines that can outlive the attempt that started them, so
// every access is under mu.
type recorder struct {
	mu sync.Mutex

	dnsStart, dnsEnd   time.Time
	connStart, connEnd time.Time
	tlsStart, tlsEnd   time.Time
	gotConn            time.Time // a connection was handed to the request
	wrote, firstByte   time.Time
	end                time.Time

	connected  bool // transport (TCP + TLS when used) established
	reused     bool
	conn       net.Conn // the connection the request went out on
	handshakes int
	peer       string
	tlsState   *tls.ConnectionState
	dialErr    error // the last dial or handshake failure, with its class
}

func (r *recorder) set(f func(r *recorder)) {
	r.mu.Lock()
	f(r)
	r.mu.Unlock()
}

func (r *recorder) mark(t *time.Time) {
	r.mu.Lock()
	*t = time.Now()
	r.mu.Unlock()
}

// phases converts the timestamps into durations; a phase that did not
// complete is zero.
func (r *recorder) phases() status.Phases {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := func(a, b time.Time) time.Duration {
		if a.IsZero() || b.IsZero() || b.Before(a) {
			return 0
		}
		return b.Sub(a)
	}
	return status.Phases{
		DNS:      d(r.dnsStart, r.dnsEnd),
		Connect:  d(r.connStart, r.connEnd),
		TLS:      d(r.tlsStart, r.tlsEnd),
		TTFB:     d(r.sentLocked(), r.firstByte),
		Transfer: d(r.firstByte, r.end),
	}
}

// sentLocked is when the request went out: the "written" report when it
// came before the answer, else the moment the connection was handed over
// (HTTP/2 reports writes from another goroutine, sometimes after the
// answer's first byte; the hand-over precedes the write by microseconds).
func (r *recorder) sentLocked() time.Time {
	if !r.wrote.IsZero() && (r.firstByte.IsZero() || !r.wrote.After(r.firstByte)) {
		return r.wrote
	}
	return r.gotConn
}

// stage names the phase an unfinished attempt was in, for reasons such as
// "timeout during TLS handshake".
func (r *recorder) stage() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !r.firstByte.IsZero():
		return "reading the response body"
	case !r.wrote.IsZero():
		return "waiting for the response"
	case !r.tlsStart.IsZero() && r.tlsEnd.IsZero():
		return "TLS handshake"
	case !r.connStart.IsZero() && r.connEnd.IsZero():
		return "TCP connect"
	case !r.dnsStart.IsZero() && r.dnsEnd.IsZero():
		return "DNS lookup"
	case r.connected:
		return "sending the request"
	}
	return "waiting for a connection"
}

type recorderKey struct{}

func withRecorder(ctx context.Context, r *recorder) context.Context {
	return context.WithValue(ctx, recorderKey{}, r)
}

func recorderFrom(ctx context.Context) *recorder {
	if r, ok := ctx.Value(recorderKey{}).(*recorder); ok {
		return r
	}
	return &recorder{} // nobody is listening: record into a throwaway
}

// dialer opens TCP connections with DNS timed as its own phase, TCP
// keepalive sized from the probe interval, a dial deadline, and
// cancellation when the prober closes.
type dialer struct {
	nd       net.Dialer
	custom   DialFunc
	resolver *net.Resolver
	closing  context.Context
	dialTO   time.Duration
	handTO   time.Duration
	work     *inflight
	hsSlots  chan struct{} // TLS handshakes in flight

	connMu sync.Mutex
	conns  map[*trackedConn]struct{}
}

// trackedConn lets Close reach every connection the prober opened, pooled
// or not, so no transport goroutine outlives the prober.
type trackedConn struct {
	net.Conn
	d    *dialer
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.d.connMu.Lock()
		delete(c.d.conns, c)
		c.d.connMu.Unlock()
	})
	return c.Conn.Close()
}

func (d *dialer) track(c net.Conn) net.Conn {
	t := &trackedConn{Conn: c, d: d}
	d.connMu.Lock()
	closed := d.conns == nil
	if !closed {
		d.conns[t] = struct{}{}
	}
	d.connMu.Unlock()
	if closed {
		c.Close()
		return nil
	}
	return t
}

// closeAll closes every tracked connection; later dials fail.
func (d *dialer) closeAll() {
	d.connMu.Lock()
	conns := d.conns
	d.conns = nil
	d.connMu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

func newDialer(m Module, o options, closing context.Context, work *inflight) *dialer {
	// Keepalive finds a dead idle connection between probes: first probe
	// after half an interval (1-15s), then three more a third of that apart.
	idle := min(max(m.Interval/2, time.Second), 15*time.Second)
	d := &dialer{
		nd: net.Dialer{
			Timeout: m.DialTimeout,
			KeepAliveConfig: net.KeepAliveConfig{
				Enable: true, Idle: idle, Interval: max(idle/3, time.Second), Count: 3,
			},
		},
		custom:   o.dial,
		resolver: o.dnsRes,
		closing:  closing,
		work:     work,
		dialTO:   m.DialTimeout,
		handTO:   m.HandshakeTimeout,
		conns:    make(map[*trackedConn]struct{}),
		hsSlots:  make(chan struct{}, o.handshakes),
	}
	if d.resolver == nil {
		d.resolver = net.DefaultResolver
	}
	return d
}

// bounded returns ctx limited by d and cancelled when the prober closes.
func (d *dialer) bounded(ctx context.Context, limit time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	stop := context.AfterFunc(d.closing, cancel)
	return ctx, func() { stop(); cancel() }
}

// dial connects to host:port, recording DNS and connect phases in rec.
func (d *dialer) dial(ctx context.Context, network, address string, rec *recorder) (net.Conn, error) {
	if !d.work.enter() {
		return nil, errClosed
	}
	defer d.work.leave()
	ctx, cancel := d.bounded(ctx, d.dialTO)
	defer cancel()
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, status.Errorf(status.ClassOther, "bad address %q: %w", address, err)
	}
	var addrs []string
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []string{ip.String()}
	} else {
		rec.mark(&rec.dnsStart)
		ips, err := d.resolver.LookupNetIP(ctx, ipNetwork(network), host)
		rec.mark(&rec.dnsEnd)
		if err != nil {
			err = d.why(ctx, err)
			cls := status.Classify(err)
			if cls != status.ClassTimeout {
				cls = status.ClassDNS
			}
			err = status.Errorf(cls, "resolve %s: %w", host, err)
			rec.set(func(r *recorder) { r.dialErr = err })
			return nil, err
		}
		for _, ip := range ips {
			addrs = append(addrs, ip.Unmap().String())
		}
		if len(addrs) == 0 {
			err := status.Errorf(status.ClassDNS, "resolve %s: no addresses", host)
			rec.set(func(r *recorder) { r.dialErr = err })
			return nil, err
		}
	}
	rec.mark(&rec.connStart)
	var c net.Conn
	for _, a := range addrs {
		target := net.JoinHostPort(a, port)
		if d.custom != nil {
			c, err = d.custom(ctx, network, target)
		} else {
			c, err = d.nd.DialContext(ctx, network, target)
		}
		if err == nil {
			break
		}
	}
	if err != nil {
		err = d.why(ctx, err)
		err = status.WithClass(status.Classify(err), fmt.Errorf("connect to %s: %w", address, err))
		// The time spent on a failed connect is still the connect phase.
		rec.set(func(r *recorder) { r.dialErr = err; r.connEnd = time.Now() })
		return nil, err
	}
	rec.set(func(r *recorder) { r.connEnd = time.Now(); r.peer = c.RemoteAddr().String() })
	if c = d.track(c); c == nil {
		return nil, errClosed
	}
	return c, nil
}

// handshake runs a TLS client handshake on c with the handshake deadline,
// recording the TLS phase. It closes c on failure.
func (d *dialer) handshake(ctx context.Context, c net.Conn, cfg *tls.Config, rec *recorder) (*tls.Conn, error) {
	if !d.work.enter() {
		c.Close()
		return nil, errClosed
	}
	defer d.work.leave()
	ctx, cancel := d.bounded(ctx, d.handTO)
	defer cancel()
	release, err := d.handshakeSlot(ctx)
	if err != nil {
		c.Close()
		err = status.WithClass(status.ClassTimeout, fmt.Errorf("TLS handshake with %s: waiting for a handshake slot: %w", c.RemoteAddr(), d.why(ctx, err)))
		rec.set(func(r *recorder) { r.dialErr = err })
		return nil, err
	}
	defer release()
	tc := tls.Client(c, cfg)
	rec.mark(&rec.tlsStart)
	err = tc.HandshakeContext(ctx)
	rec.mark(&rec.tlsEnd)
	if err != nil {
		c.Close()
		err = d.why(ctx, err)
		cls := status.Classify(err)
		if cls != status.ClassTimeout && cls != status.ClassRefused {
			cls = status.ClassTLS
		}
		err = status.WithClass(cls, fmt.Errorf("TLS handshake with %s: %w", c.RemoteAddr(), err))
		rec.set(func(r *recorder) { r.dialErr = err })
		return nil, err
	}
	cs := tc.ConnectionState()
	rec.set(func(r *recorder) { r.handshakes++; r.tlsState = &cs; r.connected = true })
	return tc, nil
}

// handshakeSlot waits for one of the prober's handshake slots.
func (d *dialer) handshakeSlot(ctx context.Context) (func(), error) {
	select {
	case d.hsSlots <- struct{}{}:
		return func() { <-d.hsSlots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// why replaces a bare cancellation with the reason the context ended: the
// prober closing, or a deadline.
func (d *dialer) why(ctx context.Context, err error) error {
	if d.closing.Err() != nil {
		return errors.Join(errClosed, err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return err
}

func ipNetwork(network string) string {
	switch network {
	case "tcp4", "udp4":
		return "ip4"
	case "tcp6", "udp6":
		return "ip6"
	}
	return "ip"
}
