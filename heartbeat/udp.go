package heartbeat

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/fb4b1dcc/pulse/clock"
	"github.com/fb4b1dcc/pulse/internal/backoff"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// udpTransport sends signed beats and retransmits each until it is ACKed,
// its window closes or the next beat is due. Everything but reading runs on
// the schedule goroutine: there is at most one outstanding beat.
type udpTransport struct {
	s     *Sender
	ackCh chan ackEvent
	rtx   clock.Timer

	mu     sync.Mutex // guards conn and closed between the reader and stop
	conn   net.Conn
	closed bool

	// schedule goroutine only
	// backoff doubles the initial RTO for every beat in a row that went
	// unanswered (as TCP keeps a backed-off RTO until an ACK comes), so a
	// stalled or overloaded monitor is not met with a retransmission storm
	// from every sender at once.
	backoff  int
	out      *outBeat
	sends    int // transmissions of out
	rto      time.Duration
	nextRtx  time.Time
	deadline time.Time
	buf      []byte
}

func newUDP(s *Sender) *udpTransport {
	t := &udpTransport{s: s, ackCh: make(chan ackEvent, 4), buf: make([]byte, 0, wire.MaxBeatSize)}
	t.rtx = s.clock.NewTimer(time.Hour)
	t.rtx.Stop()
	return t
}

func (u *udpTransport) start(ctx context.Context, wg *sync.WaitGroup) error {
	wg.Add(1)
	go u.reader(ctx, wg)
	return nil
}

func (u *udpTransport) acks() <-chan ackEvent   { return u.ackCh }
func (u *udpTransport) timer() <-chan time.Time { return u.rtx.C() }

func (u *udpTransport) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, max(u.s.cfg.Timeout, time.Second))
	defer cancel()
	if d := u.s.o.dial; d != nil {
		return d(ctx, "udp", u.s.cfg.Target)
	}
	var d net.Dialer
	return d.DialContext(ctx, "udp", u.s.cfg.Target)
}

// reader owns the socket: it dials (with back-off until it succeeds), then
// reads ACKs until the socket is closed.
func (u *udpTransport) reader(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	defer func() {
		if p := recover(); p != nil {
			u.s.c.panics.Add(1)
		}
	}()
	bo := backoff.New(backoff.Policy{Initial: 100 * time.Millisecond, Max: 10 * time.Second})
	wait := u.s.clock.NewTimer(time.Hour)
	wait.Stop()
	defer wait.Stop()
	for ctx.Err() == nil {
		c, err := u.dial(ctx)
		if err == nil {
			u.mu.Lock()
			if u.closed {
				u.mu.Unlock()
				c.Close()
				return
			}
			u.conn = c
			u.mu.Unlock()
			bo.Reset()
			u.read(ctx, c)
			u.mu.Lock()
			if u.conn == c {
				u.conn = nil
			}
			u.mu.Unlock()
			c.Close()
		}
		wait.Reset(bo.Next())
		select {
		case <-ctx.Done():
			return
		case <-wait.C():
		}
	}
}

func (u *udpTransport) read(ctx context.Context, c net.Conn) {
	buf := make([]byte, 512)
	var a wire.Ack
	for {
		n, err := c.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP port unreachable (monitor down) surfaces as a refused
			// read on a connected socket; it is not a reason to redial.
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			return
		}
		now := u.s.clock.Now()
		if wire.DecodeAck(buf[:n], &a) != nil || !a.Verify(u.s.cfg.Key, u.s.svc, u.s.inst) {
			u.s.c.badAcks.Add(1)
			continue
		}
		a.Signed, a.Tag = nil, nil
		select {
		case u.ackCh <- ackEvent{ack: a, at: now}:
		default:
			u.s.c.staleAcks.Add(1) // the schedule goroutine is far behind; this ACK is stale by now
		}
	}
}

// stop closes the socket so the reader returns, and ends an outstanding beat.
func (u *udpTransport) stop() {
	u.mu.Lock()
	u.closed = true
	if u.conn != nil {
		u.conn.Close()
	}
	u.mu.Unlock()
	u.rtx.Stop()
	if u.out != nil {
		u.s.finish(u.out, Result{Attempts: u.sends, Err: status.WithClass(status.ClassOther, context.Canceled)})
		u.out = nil
	}
}

func (u *udpTransport) send(b *outBeat) {
	if u.out != nil {
		u.backoff = min(u.backoff+1, maxBackoff)
		u.s.finish(u.out, Result{Attempts: u.sends, Err: ErrSuperseded})
		u.out = nil
	}
	if err := u.transmit(b, 0, b.first); err != nil {
		res := Result{Attempts: 1, Err: err}
		if errors.Is(err, ErrNotReady) {
			res.Attempts = 0
		}
		u.s.finish(b, res)
		u.rtx.Stop()
		return
	}
	u.out, u.sends = b, 1
	u.rto = u.initialRTO(b.interval)
	u.nextRtx = b.first.Add(u.rto)
	// Retransmit inside the beat's window: its timeout, and never past
	// the time the next beat is due.
	u.deadline = b.first.Add(min(b.timeout, b.interval))
	u.arm(b.first)
}

const maxBackoff = 6

// initialRTO is max(2×SRTT, SRTT+4×RTTVAR, MinRTO) (MinRTO before the
// first sample), doubled once per unanswered beat in a row, and capped at
// interval/4.
func (u *udpTransport) initialRTO(interval time.Duration) time.Duration {
	rto := u.s.cfg.MinRTO
	if srtt, rttvar, _, ok := u.s.rtt.get(); ok {
		rto = max(2*srtt, srtt+4*rttvar, rto)
	}
	rto <<= u.backoff
	return min(rto, max(interval/4, u.s.cfg.MinRTO))
}

func (u *udpTransport) arm(now time.Time) {
	next := u.deadline
	if u.sends <= u.s.cfg.MaxRetransmits && u.nextRtx.Before(u.deadline) {
		next = u.nextRtx
	}
	u.rtx.Reset(max(next.Sub(now), 0))
}

func (u *udpTransport) onTimer() {
	if u.out == nil {
		return
	}
	now := u.s.clock.Now()
	if u.sends <= u.s.cfg.MaxRetransmits && u.nextRtx.Before(u.deadline) && !now.Before(u.nextRtx) {
		if err := u.transmit(u.out, u.sends, now); err == nil {
			u.s.c.retransmits.Add(1)
		}
		u.sends++
		// Back off from the planned time, so the schedule does not drift
		// with timer latency: first+rto, +2rto, +4rto, ...
		u.rto *= 2
		u.nextRtx = u.nextRtx.Add(u.rto)
		u.arm(now)
		return
	}
	if !now.Before(u.deadline) {
		u.backoff = min(u.backoff+1, maxBackoff)
		u.s.finish(u.out, Result{Attempts: u.sends, Err: ErrNoAck})
		u.out = nil
		return
	}
	u.arm(now)
}

func (u *udpTransport) onAck(ev ackEvent) {
	a := &ev.ack
	if u.out == nil || a.Epoch != u.s.epoch || a.Seq != u.out.seq {
		u.s.c.staleAcks.Add(1)
		return
	}
	// Copies share the beat's sent-at, so after a retransmission the ACK
	// cannot say which copy it answers: Karn's rule, no RTT sample then.
	rtt := u.s.sentAt(ev.at) - a.SentAt
	if u.sends <= 1 {
		u.s.rtt.sample(rtt)
	}
	u.backoff = 0
	u.s.applyDirective(a.Directive)
	u.rtx.Stop()
	b := u.out
	u.out = nil
	u.s.finish(b, Result{Acked: true, Code: a.Code, RTT: rtt, Attempts: u.sends})
}

func (u *udpTransport) transmit(b *outBeat, attempt int, now time.Time) error {
	u.mu.Lock()
	c := u.conn
	u.mu.Unlock()
	if c == nil {
		return ErrNotReady
	}
	srtt, _, _, _ := u.s.rtt.get()
	wb := wire.Beat{
		Attempt: uint8(min(attempt, 255)), Status: b.status, Reason: b.reason, Interval: b.interval,
		// Every copy carries the beat's own time (its first transmission),
		// so the monitor can tell a late retransmission from a late beat.
		Epoch: u.s.epoch, Seq: b.seq, SentAt: u.s.sentAt(b.first), RTT: srtt,
		Service: u.s.svc, Instance: u.s.inst, Trace: b.trace,
	}
	var err error
	u.buf, err = wire.AppendBeat(u.buf[:0], &wb, u.s.cfg.Key)
	if err != nil {
		return status.WithClass(status.ClassInternal, err)
	}
	// A UDP write rarely blocks, but if the socket buffer is full it must
	// not hold the schedule.
	_ = c.SetWriteDeadline(time.Now().Add(min(b.timeout, time.Second)))
	if _, err := c.Write(u.buf); err != nil {
		return status.WithClass(status.Classify(err), err)
	}
	return nil
}
