package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/fb4b1dcc/pulse/clock"
	"github.com/fb4b1dcc/pulse/internal/backoff"
	pulsev1 "github.com/fb4b1dcc/pulse/proto/pulse/v1"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
)

// grpcTransport keeps one Beat stream open and writes one BeatRequest per
// beat; a streamer goroutine owns the stream (and the receive goroutine of
// each stream it opens) and reopens it with back-off when it breaks.
type grpcTransport struct {
	s       *Sender
	cc      *grpc.ClientConn
	client  pulsev1.MonitorClient
	pending chan *outBeat // newest beat not yet written; a newer one replaces it
}

func newGRPC(s *Sender) (*grpcTransport, error) {
	return &grpcTransport{s: s, pending: make(chan *outBeat, 1)}, nil
}

func (g *grpcTransport) start(ctx context.Context, wg *sync.WaitGroup) error {
	p := g.s.params.Load()
	creds := insecure.NewCredentials()
	if g.s.cfg.TLS != nil {
		creds = credentials.NewTLS(g.s.cfg.TLS.Clone())
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// Keepalive from the interval (gRPC enforces at least 10s): a dead
		// connection is found even between beats.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: max(p.interval, 10*time.Second), Timeout: max(p.timeout, time.Second), PermitWithoutStream: true,
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 10 * time.Second},
			MinConnectTimeout: max(p.timeout, time.Second),
		}),
	}
	if d := g.s.o.dial; d != nil {
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d(ctx, "tcp", addr) }))
	}
	cc, err := grpc.NewClient(g.s.cfg.Target, opts...)
	if err != nil {
		return fmt.Errorf("heartbeat: gRPC target %q: %w", g.s.cfg.Target, err)
	}
	g.cc = cc
	g.client = pulsev1.NewMonitorClient(cc)
	wg.Add(1)
	go g.streamer(ctx, wg)
	return nil
}

func (g *grpcTransport) acks() <-chan ackEvent   { return nil }
func (g *grpcTransport) onAck(ackEvent)          {}
func (g *grpcTransport) timer() <-chan time.Time { return nil }
func (g *grpcTransport) onTimer()                {}

func (g *grpcTransport) stop() {
	if g.cc != nil {
		g.cc.Close()
	}
}

func (g *grpcTransport) send(b *outBeat) {
	for {
		select {
		case g.pending <- b:
			return
		default:
		}
		select {
		case old := <-g.pending:
			g.s.finish(old, Result{Err: ErrSuperseded})
		default:
		}
	}
}

func (g *grpcTransport) streamer(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	defer func() {
		if p := recover(); p != nil {
			g.s.c.panics.Add(1)
		}
		select {
		case b := <-g.pending:
			g.s.finish(b, Result{Err: status.WithClass(status.ClassOther, context.Canceled)})
		default:
		}
	}()
	bo := backoff.New(backoff.Policy{Initial: 200 * time.Millisecond, Max: 10 * time.Second})
	wait := g.s.clock.NewTimer(time.Hour)
	wait.Stop()
	defer wait.Stop()
	for opened := 0; ctx.Err() == nil; opened++ {
		if opened > 0 {
			g.s.c.reconnects.Add(1)
		}
		if g.session(ctx) {
			bo.Reset()
		}
		if ctx.Err() != nil {
			return
		}
		wait.Reset(bo.Next())
		select {
		case <-ctx.Done():
			return
		case <-wait.C():
		}
	}
}

type sentBeat struct {
	b        *outBeat
	attempts int
}

var errStreamBroken = status.WithClass(status.ClassRefused, errors.New("heartbeat: gRPC Beat stream broke"))

// session runs one Beat stream until it breaks; it reports whether the
// monitor answered at least once.
func (g *grpcTransport) session(ctx context.Context) (answered bool) {
	sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+g.s.cfg.Token))
	defer cancel()
	// One reused watchdog bounds opening the stream and every Send: a
	// stuck write cancels the stream instead of stalling beats forever.
	watchdog := time.AfterFunc(time.Hour, cancel)
	watchdog.Stop()
	defer watchdog.Stop()

	watchdog.Reset(max(g.s.params.Load().timeout, time.Second))
	stream, err := g.client.Beat(sctx)
	watchdog.Stop()
	if err != nil {
		return false
	}
	acks := make(chan *pulsev1.BeatAck, 16)
	recvDone := make(chan struct{})
	var recvErr error // written before recvDone closes
	go func() {       // joined below before session returns
		defer close(recvDone)
		for {
			a, err := stream.Recv()
			if err != nil {
				recvErr = err
				return
			}
			select {
			case acks <- a:
			case <-sctx.Done():
				return
			}
		}
	}()
	var inflight []sentBeat
	fail := func(err error) {
		for _, sb := range inflight {
			g.s.finish(sb.b, Result{Attempts: sb.attempts, Err: err})
		}
		inflight = inflight[:0]
	}
	defer func() {
		cancel()
		<-recvDone
	}()
	ackTimer := g.s.clock.NewTimer(time.Hour)
	ackTimer.Stop()
	defer ackTimer.Stop()
	arm := func(t clock.Timer) {
		if len(inflight) > 0 {
			t.Reset(max(inflight[0].b.first.Add(inflight[0].b.timeout).Sub(g.s.clock.Now()), 0))
		} else {
			t.Stop()
		}
	}
	missed := 0
	for {
		select {
		case <-ctx.Done():
			fail(status.WithClass(status.ClassOther, context.Canceled))
			return answered
		case <-recvDone:
			err := errStreamBroken
			if recvErr != nil && !errors.Is(recvErr, io.EOF) {
				err = status.WithClass(status.Classify(recvErr), fmt.Errorf("heartbeat: gRPC Beat stream: %w", recvErr))
			}
			fail(err)
			return answered
		case b := <-g.pending:
			now := g.s.clock.Now()
			if now.After(b.first.Add(b.timeout)) {
				g.s.finish(b, Result{Err: ErrNoAck}) // waited out its window while the stream was down
				continue
			}
			srtt, _, _, _ := g.s.rtt.get()
			req := &pulsev1.BeatRequest{
				Service: g.s.cfg.Service, Instance: g.s.cfg.Instance, Epoch: g.s.epoch, Seq: b.seq,
				SentAtNs: int64(g.s.sentAt(b.first)), Status: pulsev1.HealthStatus(b.status), Reason: uint32(b.reason),
				IntervalMs: wire.DurMS(b.interval), RttUs: uint32(min(srtt.Microseconds(), 1<<32-1)),
			}
			if b.trace.IsValid() {
				req.Traceparent = b.trace.String()
			}
			watchdog.Reset(b.timeout)
			err := stream.Send(req)
			watchdog.Stop()
			if err != nil {
				g.s.finish(b, Result{Attempts: 1, Err: status.WithClass(status.Classify(err), fmt.Errorf("heartbeat: gRPC send: %w", err))})
				fail(errStreamBroken)
				return answered
			}
			inflight = append(inflight, sentBeat{b: b, attempts: 1})
			if len(inflight) == 1 {
				arm(ackTimer)
			}
		case a := <-acks:
			answered = true
			missed = 0
			now := g.s.clock.Now()
			// Answers come in order: anything before the matching beat
			// was lost with a broken request.
			for len(inflight) > 0 && inflight[0].b.seq != a.GetSeq() {
				g.s.finish(inflight[0].b, Result{Attempts: 1, Err: ErrNoAck})
				inflight = inflight[1:]
			}
			if len(inflight) == 0 || a.GetEpoch() != g.s.epoch {
				g.s.c.staleAcks.Add(1)
				arm(ackTimer)
				continue
			}
			sb := inflight[0]
			inflight = inflight[1:]
			arm(ackTimer)
			res := g.result(a, now)
			res.Attempts = sb.attempts
			g.s.finish(sb.b, res)
		case <-ackTimer.C():
			now := g.s.clock.Now()
			for len(inflight) > 0 && !now.Before(inflight[0].b.first.Add(inflight[0].b.timeout)) {
				g.s.finish(inflight[0].b, Result{Attempts: 1, Err: ErrNoAck})
				inflight = inflight[1:]
				missed++
			}
			if missed >= 2 {
				// Two beats in a row unanswered on a stream that looks
				// open: treat it as dead and open a new one.
				fail(errStreamBroken)
				return answered
			}
			arm(ackTimer)
		}
	}
}

func (g *grpcTransport) result(a *pulsev1.BeatAck, now time.Time) Result {
	rtt := g.s.sentAt(now) - time.Duration(a.GetSentAtNs())
	switch a.GetCode() {
	case pulsev1.BeatAck_CODE_ACCEPTED, pulsev1.BeatAck_CODE_DUPLICATE:
		g.s.rtt.sample(rtt)
		g.s.applyDirective(wire.Directive{
			Interval: time.Duration(a.GetIntervalMs()) * time.Millisecond,
			Jitter:   time.Duration(a.GetJitterMs()) * time.Millisecond,
			Timeout:  time.Duration(a.GetTimeoutMs()) * time.Millisecond,
		})
		code := wire.AckAccepted
		if a.GetCode() == pulsev1.BeatAck_CODE_DUPLICATE {
			code = wire.AckDuplicate
		}
		return Result{Acked: true, Code: code, RTT: rtt}
	}
	class := status.ClassProtocol
	if a.GetCode() == pulsev1.BeatAck_CODE_OVERFLOW || a.GetCode() == pulsev1.BeatAck_CODE_LIMIT {
		class = status.ClassRefused
	}
	return Result{Err: status.Errorf(class, "heartbeat: monitor rejected the beat (%v): %s", a.GetCode(), a.GetMessage())}
}
