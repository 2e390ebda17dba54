package detection

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/internal/faultnet"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/wire"
)

// BeatKey is the HMAC secret the pulse side of the benchmarks uses.
const BeatKey = "bench-key-0123456789abcdef0123456789"

// PulseConfig is the monitor configuration the detection runs use: the
// LAN profile's defaults (1 s beats, adaptive detector, protection on)
// with one service whose instances register by their beats.
func PulseConfig() (*config.Config, error) {
	return config.Parse("bench.yaml", []byte(`
profile: lan
services:
  - name: bench
    passive:
      interval: 1s
      keys:
        - {id: 1, secret: {value: `+BeatKey+`}}
`))
}

// pulseCluster is one in-process `pulse serve` and N heartbeat senders.
// Senders whose index is below cutRelays beat through a relay of their
// own (so one of them can be cut off alone); the others share one relay
// (loss scenario) or beat directly (no relay given).
type pulseCluster struct {
	d       *daemon.Daemon
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	shared  *faultnet.Relay
	own     []*faultnet.Relay
	senders []*pulseSender
	written atomic.Int64 // beat bytes written by senders
	read    atomic.Int64 // ACK bytes read by senders
	log     eventLog
	loss    atomic.Uint64
}

type pulseSender struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func newPulseCluster(n int, viaRelay bool, ownRelays int, seed uint64) (*pulseCluster, error) {
	cfg, err := PulseConfig()
	if err != nil {
		return nil, err
	}
	d, err := daemon.New(daemon.Options{Config: cfg, HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0", InMemory: true})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &pulseCluster{d: d, cancel: cancel}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); _ = d.Run(ctx) }()
	<-d.Ready()

	// The watcher: every transition, as an API client would see it.
	mon := d.Monitor()
	w := mon.Watch(mon.LastSeq())
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer w.Close()
		var buf []monitor.Event
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-w.C():
				if !ok {
					return
				}
			}
			buf, _ = w.Next(buf[:0], 4096)
			now := time.Now()
			for _, e := range buf {
				if e.Instance == "" {
					continue
				}
				i, err := strconv.Atoi(strings.TrimPrefix(e.Instance, "i"))
				if err != nil {
					continue
				}
				c.log.add(event{At: now, Observer: 0, Subject: i, To: e.To, Reason: e.Reason})
			}
		}
	}()

	target := d.UDPAddr()
	if viaRelay {
		if c.shared, err = c.relay(target, seed); err != nil {
			c.close()
			return nil, err
		}
	}
	key, err := wire.NewKey(1, []byte(BeatKey))
	if err != nil {
		c.close()
		return nil, err
	}
	for i := range n {
		t := target
		switch {
		case i < ownRelays:
			r, err := c.relay(target, seed+uint64(i)+1)
			if err != nil {
				c.close()
				return nil, err
			}
			c.own = append(c.own, r)
			t = r.Addr()
		case c.shared != nil:
			t = c.shared.Addr()
		}
		s, err := heartbeat.New(heartbeat.Config{
			Service: "bench", Instance: fmt.Sprintf("i%03d", i), Transport: wire.UDP, Target: t, Key: key,
			Interval: time.Second,
		}, heartbeat.WithDialer(c.dial))
		if err != nil {
			c.close()
			return nil, err
		}
		sctx, scancel := context.WithCancel(ctx)
		ps := &pulseSender{cancel: scancel, done: make(chan struct{})}
		c.senders = append(c.senders, ps)
		go func() { defer close(ps.done); _ = s.Run(sctx) }()
	}
	return c, nil
}

func (c *pulseCluster) relay(upstream string, seed uint64) (*faultnet.Relay, error) {
	r, err := faultnet.New(faultnet.Config{Upstream: upstream, Seed: seed})
	if err != nil {
		return nil, err
	}
	r.Start()
	return r, nil
}

func (c *pulseCluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &splitCountConn{Conn: conn, w: &c.written, r: &c.read}, nil
}

// splitCountConn counts written and read bytes apart.
type splitCountConn struct {
	net.Conn
	w, r *atomic.Int64
}

func (c *splitCountConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.r.Add(int64(n))
	return n, err
}

func (c *splitCountConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.w.Add(int64(n))
	return n, err
}

func (c *pulseCluster) crash(i int) {
	s := c.senders[i]
	s.once.Do(func() {
		s.cancel()
		<-s.done
	})
}

func (c *pulseCluster) setLoss(p float64) {
	if c.shared == nil {
		return
	}
	c.loss.Store(uint64(p * 1e6))
	f := faultnet.Faults{Loss: p}
	_ = c.shared.SetFaults(f, f)
}

func (c *pulseCluster) setCut(i int, on bool) {
	if i >= len(c.own) {
		return
	}
	var f faultnet.Faults
	if on {
		f.Loss = 1
	}
	_ = c.own[i].SetFaults(f, f)
}

// bytes is beat bytes sent plus ACK bytes the monitor sent: through the
// shared relay, every ACK that entered it (lost ones were on the wire
// too); directly, what the senders read.
func (c *pulseCluster) bytes() int64 {
	if c.shared != nil {
		return c.written.Load() + int64(c.shared.Stats().Down.In)*wire.AckSize
	}
	return c.written.Load() + c.read.Load()
}

func (c *pulseCluster) relays() []*faultnet.Relay {
	rs := append([]*faultnet.Relay(nil), c.own...)
	if c.shared != nil {
		rs = append(rs, c.shared)
	}
	return rs
}

func (c *pulseCluster) faultStats() (sent, lost, dials, dialsLost int64) {
	for _, r := range c.relays() {
		st := r.Stats()
		sent += int64(st.Up.In + st.Down.In)
		lost += int64(st.Up.Lost + st.Down.Lost)
	}
	return sent, lost, 0, 0
}

func (c *pulseCluster) events() []event   { return c.log.snapshot() }
func (c *pulseCluster) observers() int    { return 1 }
func (c *pulseCluster) deadState() string { return "down" }

func (c *pulseCluster) close() {
	for i := range c.senders {
		c.crash(i)
	}
	c.cancel()
	c.wg.Wait()
	for _, r := range c.relays() {
		r.Close()
	}
}
