package faultnet

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Faults describes what happens to packets in one direction. The zero value
// forwards everything at once.
type Faults struct {
	// Loss is the probability that a packet is dropped, independently of
	// every other packet.
	Loss float64
	// Burst loss follows a two-state (Gilbert–Elliott) model: in the good
	// state a packet enters a burst with probability BurstEnter; in a burst
	// it leaves with probability BurstExit (mean burst length 1/BurstExit
	// packets) and is lost with probability BurstLoss.
	BurstEnter float64
	BurstExit  float64
	BurstLoss  float64
	// Delay is added to every packet, plus a uniform draw in [-Jitter,
	// +Jitter] (the sum is never below zero). Jitter alone reorders.
	Delay  time.Duration
	Jitter time.Duration
	// Duplicate is the probability that a packet is delivered twice.
	Duplicate float64
	// Reorder is the probability that a packet is held back by
	// ReorderDelay (default 2ms) so that later packets overtake it.
	Reorder      float64
	ReorderDelay time.Duration
}

func (f Faults) validate(dir string) error {
	var errs []error
	for name, p := range map[string]float64{"Loss": f.Loss, "BurstEnter": f.BurstEnter, "BurstExit": f.BurstExit,
		"BurstLoss": f.BurstLoss, "Duplicate": f.Duplicate, "Reorder": f.Reorder} {
		if p < 0 || p > 1 || p != p {
			errs = append(errs, fmt.Errorf("faultnet: %s.%s = %v, want a probability in [0,1]", dir, name, p))
		}
	}
	if f.BurstEnter > 0 && f.BurstExit == 0 {
		errs = append(errs, fmt.Errorf("faultnet: %s.BurstEnter set but BurstExit is 0: a burst would never end", dir))
	}
	if f.Delay < 0 || f.Jitter < 0 || f.ReorderDelay < 0 {
		errs = append(errs, fmt.Errorf("faultnet: %s: negative Delay, Jitter or ReorderDelay", dir))
	}
	return errors.Join(errs...)
}

// Config configures a Relay.
type Config struct {
	Listen   string // address clients send to; default "127.0.0.1:0"
	Upstream string // address packets are relayed to (required)
	Seed     uint64 // seeds both directions' random sources
	Up       Faults // client → upstream
	Down     Faults // upstream → client
	// IdleTimeout closes a client's upstream socket after this long without
	// traffic (default 1 minute).
	IdleTimeout time.Duration
}

// DirStats counts what happened in one direction.
type DirStats struct {
	In, Forwarded, Lost, BurstLost, Duplicated, Reordered, Delayed uint64
}

// Stats is a snapshot of a Relay's counters.
type Stats struct {
	Up, Down DirStats
	Sessions int
	// SessionErrors counts clients whose upstream socket could not be
	// opened (their datagrams are dropped); LastSessionError says why
	// (typically "too many open files": raise ulimit -n).
	SessionErrors    uint64
	LastSessionError string
}

// Relay is a UDP relay with faults. Each client address gets its own
// upstream socket, so upstream answers find their way back, as through a
// NAT.
type Relay struct {
	cfg      Config
	upstream *net.UDPAddr
	ln       *net.UDPConn
	up, down direction

	mu         sync.Mutex
	sessions   map[netip.AddrPort]*session
	closed     bool
	sessErrs   uint64 // under mu
	lastSesErr error  // under mu

	sched     chan struct{} // wakes the scheduler when an earlier deadline arrives
	qmu       sync.Mutex
	queue     pktHeap
	seq       uint64
	done      chan struct{}
	wg        sync.WaitGroup
	started   atomic.Bool
	closeOnce sync.Once
}

type direction struct {
	name   string
	mu     sync.Mutex
	faults Faults
	rnd    *rand.Rand
	burst  bool
	stats  struct {
		in, fwd, lost, burstLost, dup, reorder, delayed atomic.Uint64
	}
}

type session struct {
	client netip.AddrPort
	conn   *net.UDPConn
	last   atomic.Int64 // unix nanos of last traffic (wall time is fine: idleness only)
}

type pkt struct {
	when time.Time
	seq  uint64
	data []byte
	s    *session // up: write to s.conn; down: write to s.client via ln
	up   bool
}

// New validates cfg and binds the listening socket. It starts no goroutine;
// call Start.
func New(cfg Config) (*Relay, error) {
	if cfg.Upstream == "" {
		return nil, errors.New("faultnet: Upstream is required")
	}
	if err := errors.Join(cfg.Up.validate("Up"), cfg.Down.validate("Down")); err != nil {
		return nil, err
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = time.Minute
	}
	ua, err := net.ResolveUDPAddr("udp", cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("faultnet: upstream %q: %w", cfg.Upstream, err)
	}
	la, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("faultnet: listen %q: %w", cfg.Listen, err)
	}
	ln, err := net.ListenUDP("udp", la)
	if err != nil {
		return nil, fmt.Errorf("faultnet: listen %q: %w", cfg.Listen, err)
	}
	_ = ln.SetReadBuffer(4 << 20)
	_ = ln.SetWriteBuffer(4 << 20)
	r := &Relay{
		cfg: cfg, upstream: ua, ln: ln,
		sessions: map[netip.AddrPort]*session{},
		sched:    make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	r.up = direction{name: "up", faults: cfg.Up, rnd: rand.New(rand.NewPCG(cfg.Seed, 0x7570))}
	r.down = direction{name: "down", faults: cfg.Down, rnd: rand.New(rand.NewPCG(cfg.Seed, 0x646f776e))}
	return r, nil
}

// Addr is the address clients send to.
func (r *Relay) Addr() string { return r.ln.LocalAddr().String() }

// Start starts the relay's goroutines. Calling it twice is a no-op.
func (r *Relay) Start() {
	if !r.started.CompareAndSwap(false, true) {
		return
	}
	r.wg.Add(2)
	go r.readClients()
	go r.scheduler()
}

// SetFaults replaces both directions' faults at once, for example to begin
// or end a loss burst at a moment the test chooses.
func (r *Relay) SetFaults(up, down Faults) error {
	if err := errors.Join(up.validate("Up"), down.validate("Down")); err != nil {
		return err
	}
	r.up.mu.Lock()
	r.up.faults, r.up.burst = up, false
	r.up.mu.Unlock()
	r.down.mu.Lock()
	r.down.faults, r.down.burst = down, false
	r.down.mu.Unlock()
	return nil
}

// Stats returns the counters.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	n, errs, last := len(r.sessions), r.sessErrs, r.lastSesErr
	r.mu.Unlock()
	st := Stats{Up: r.up.snapshot(), Down: r.down.snapshot(), Sessions: n, SessionErrors: errs}
	if last != nil {
		st.LastSessionError = last.Error()
	}
	return st
}

func (d *direction) snapshot() DirStats {
	return DirStats{In: d.stats.in.Load(), Forwarded: d.stats.fwd.Load(), Lost: d.stats.lost.Load(),
		BurstLost: d.stats.burstLost.Load(), Duplicated: d.stats.dup.Load(), Reordered: d.stats.reorder.Load(),
		Delayed: d.stats.delayed.Load()}
}

// Close stops the relay and closes every socket; it waits for its
// goroutines. It is idempotent.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		close(r.done)
		r.ln.Close()
		r.mu.Lock()
		r.closed = true
		for _, s := range r.sessions {
			s.conn.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return nil
}

// decide draws the fate of one packet: how many copies (0, 1, 2) and the
// delay of each.
func (d *direction) decide() (copies int, delays [2]time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.faults
	d.stats.in.Add(1)
	if f.BurstEnter > 0 {
		if d.burst {
			if d.rnd.Float64() < f.BurstExit {
				d.burst = false
			}
		} else if d.rnd.Float64() < f.BurstEnter {
			d.burst = true
		}
		if d.burst && d.rnd.Float64() < f.BurstLoss {
			d.stats.burstLost.Add(1)
			return 0, delays
		}
	}
	if f.Loss > 0 && d.rnd.Float64() < f.Loss {
		d.stats.lost.Add(1)
		return 0, delays
	}
	copies = 1
	if f.Duplicate > 0 && d.rnd.Float64() < f.Duplicate {
		copies = 2
		d.stats.dup.Add(1)
	}
	for i := range copies {
		dl := f.Delay
		if f.Jitter > 0 {
			dl += time.Duration((d.rnd.Float64()*2 - 1) * float64(f.Jitter))
		}
		if f.Reorder > 0 && d.rnd.Float64() < f.Reorder {
			rd := f.ReorderDelay
			if rd == 0 {
				rd = 2 * time.Millisecond
			}
			dl += rd
			d.stats.reorder.Add(1)
		}
		delays[i] = max(dl, 0)
	}
	return copies, delays
}

func (r *Relay) readClients() {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.ln.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-r.done:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return
		}
		s := r.session(from)
		if s == nil {
			continue
		}
		s.last.Store(time.Now().UnixNano())
		r.route(&r.up, buf[:n], s, true)
	}
}

func (r *Relay) session(from netip.AddrPort) *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if s, ok := r.sessions[from]; ok {
		return s
	}
	conn, err := net.DialUDP("udp", nil, r.upstream)
	if err != nil {
		// Counted, not silent: a test that ran out of descriptors must
		// say so instead of reporting the lost beats as a verdict.
		r.sessErrs++
		r.lastSesErr = err
		return nil
	}
	_ = conn.SetReadBuffer(1 << 20)
	s := &session{client: from, conn: conn}
	r.sessions[from] = s
	r.wg.Add(1)
	go r.readUpstream(s)
	return s
}

func (r *Relay) readUpstream(s *session) {
	defer r.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return // closed (relay closing or session idle), or upstream gone
		}
		s.last.Store(time.Now().UnixNano())
		r.route(&r.down, buf[:n], s, false)
	}
}

func (r *Relay) route(d *direction, data []byte, s *session, up bool) {
	copies, delays := d.decide()
	for i := range copies {
		if delays[i] == 0 {
			r.deliver(data, s, up)
			d.stats.fwd.Add(1)
			continue
		}
		d.stats.delayed.Add(1)
		r.enqueue(&pkt{when: time.Now().Add(delays[i]), data: append([]byte(nil), data...), s: s, up: up})
	}
}

func (r *Relay) deliver(data []byte, s *session, up bool) {
	if up {
		_, _ = s.conn.Write(data)
		return
	}
	_, _ = r.ln.WriteToUDPAddrPort(data, s.client)
}

func (r *Relay) enqueue(p *pkt) {
	r.qmu.Lock()
	r.seq++
	p.seq = r.seq
	heap.Push(&r.queue, p)
	first := r.queue[0] == p
	r.qmu.Unlock()
	if first {
		select {
		case r.sched <- struct{}{}:
		default:
		}
	}
}

// scheduler delivers delayed packets in deadline order with one reused
// timer, and closes idle sessions.
func (r *Relay) scheduler() {
	defer r.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	sweep := time.NewTicker(r.cfg.IdleTimeout / 2)
	defer sweep.Stop()
	for {
		r.qmu.Lock()
		now := time.Now()
		var due []*pkt
		for len(r.queue) > 0 && !r.queue[0].when.After(now) {
			due = append(due, heap.Pop(&r.queue).(*pkt))
		}
		next := time.Hour
		if len(r.queue) > 0 {
			next = r.queue[0].when.Sub(now)
		}
		r.qmu.Unlock()
		for _, p := range due {
			r.deliver(p.data, p.s, p.up)
			if p.up {
				r.up.stats.fwd.Add(1)
			} else {
				r.down.stats.fwd.Add(1)
			}
		}
		timer.Reset(next)
		select {
		case <-r.done:
			return
		case <-timer.C:
		case <-r.sched:
		case <-sweep.C:
			r.sweepIdle()
		}
	}
}

func (r *Relay) sweepIdle() {
	cut := time.Now().Add(-r.cfg.IdleTimeout).UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, s := range r.sessions {
		if s.last.Load() < cut {
			s.conn.Close()
			delete(r.sessions, k)
		}
	}
}

type pktHeap []*pkt

func (h pktHeap) Len() int { return len(h) }
func (h pktHeap) Less(i, j int) bool {
	if h[i].when.Equal(h[j].when) {
		return h[i].seq < h[j].seq
	}
	return h[i].when.Before(h[j].when)
}
func (h pktHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pktHeap) Push(x any)   { *h = append(*h, x.(*pkt)) }
func (h *pktHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return p
}
