package ingest

import (
	"errors"
	"io"
	"net/netip"
	"time"

	pulsev1 "github.com/fb4b1dcc/pulse/proto/pulse/v1"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	grpcstatus "google.golang.org/grpc/status"
)

// monitorServer serves only Beat of pulse.v1.Monitor; the API adds the
// other methods by composing its own server with Receiver.Beat.
type monitorServer struct {
	pulsev1.UnimplementedMonitorServer
	r *Receiver
}

func (s monitorServer) Beat(stream pulsev1.Monitor_BeatServer) error { return s.r.Beat(stream) }

// RegisterGRPC registers a pulse.v1.Monitor service whose Beat is r's (the
// other methods answer Unimplemented). A server that implements the other
// methods too should embed them and call r.Beat instead.
func (r *Receiver) RegisterGRPC(s grpc.ServiceRegistrar) {
	pulsev1.RegisterMonitorServer(s, monitorServer{r: r})
}

func (r *Receiver) newGRPCServer() *grpc.Server {
	opts := []grpc.ServerOption{
		// Senders ping every max(interval, 10s); allow it instead of
		// answering with GOAWAY too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
	if r.cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(r.cfg.TLS)))
	}
	s := grpc.NewServer(opts...)
	r.RegisterGRPC(s)
	return s
}

// stopGRPC stops the server: Beat streams live as long as their senders,
// so a graceful stop would always wait out its timeout. In-flight beats
// are not lost: a beat is ACKed only after it was queued, and senders
// retry unACKed beats.
func stopGRPC(s *grpc.Server) { s.Stop() }

var healthFromProto = [...]status.Status{
	pulsev1.HealthStatus_HEALTH_STATUS_UNKNOWN:   status.Unknown,
	pulsev1.HealthStatus_HEALTH_STATUS_HEALTHY:   status.Healthy,
	pulsev1.HealthStatus_HEALTH_STATUS_DEGRADED:  status.Degraded,
	pulsev1.HealthStatus_HEALTH_STATUS_UNHEALTHY: status.Unhealthy,
}

// Beat implements pulse.v1.Monitor/Beat: one BeatAck per BeatRequest, in
// order. The stream's bearer token must belong to the service of every
// beat on it.
func (r *Receiver) Beat(stream pulsev1.Monitor_BeatServer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.c.panics.Add(1)
			err = grpcstatus.Error(codes.Internal, "ingest: beat stream failed; counted as a panic")
		}
	}()
	ctx := stream.Context()
	var token string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			token = bearer(v[0])
		}
	}
	if token == "" {
		r.c.dropped[DropAuth].Add(1)
		return grpcstatus.Error(codes.Unauthenticated, "ingest: send \"authorization: Bearer <token>\" metadata on the Beat stream")
	}
	var peerAddr netip.AddrPort
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		peerAddr, _ = netip.ParseAddrPort(p.Addr.String())
	}
	var (
		req      pulsev1.BeatRequest
		ack      pulsev1.BeatAck
		authedAs string // the service the token was last verified for
	)
	for {
		if err := stream.RecvMsg(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		r.c.received[wire.GRPC].Add(1)
		st := req.GetStatus()
		q := beatReq{
			service: req.GetService(), instance: req.GetInstance(), epoch: req.GetEpoch(), seq: req.GetSeq(),
			sentAt: time.Duration(req.GetSentAtNs()), reason: wire.Reason(req.GetReason()),
			interval: time.Duration(req.GetIntervalMs()) * time.Millisecond,
			rtt:      time.Duration(req.GetRttUs()) * time.Microsecond, attempt: uint8(min(req.GetAttempt(), 255)),
			peer: peerAddr,
		}
		q.status = 255 // invalid unless mapped below
		if int(st) >= 0 && int(st) < len(healthFromProto) {
			q.status = healthFromProto[st]
		}
		ack.Reset()
		ack.Epoch, ack.Seq, ack.SentAtNs = q.epoch, q.seq, int64(q.sentAt)
		if msg := q.validate(); msg != "" || req.GetReason() > 0xffff {
			if msg == "" {
				msg = "reason must fit 16 bits"
			}
			r.c.dropped[DropMalformed].Add(1)
			ack.Code, ack.Message = pulsev1.BeatAck_CODE_MALFORMED, msg
		} else if q.service != authedAs && !r.authorized(q.service, token) {
			r.c.dropped[DropAuth].Add(1)
			return grpcstatus.Errorf(codes.Unauthenticated, "ingest: the stream's bearer token is not valid for service %q", q.service)
		} else {
			authedAs = q.service
			if tp := req.GetTraceparent(); tp != "" {
				q.trace, _ = wire.ParseTraceParent(tp)
			}
			res := r.accept(wire.GRPC, &q)
			switch {
			case res.dup:
				ack.Code = pulsev1.BeatAck_CODE_DUPLICATE
			case res.accepted:
				ack.Code = pulsev1.BeatAck_CODE_ACCEPTED
			case res.drop == DropReplay:
				ack.Code = pulsev1.BeatAck_CODE_REPLAY
			case res.drop == DropLimit:
				ack.Code = pulsev1.BeatAck_CODE_LIMIT
			default:
				ack.Code = pulsev1.BeatAck_CODE_OVERFLOW
			}
			if !res.accepted {
				ack.Message = res.msg
			}
			ack.IntervalMs = wire.DurMS(res.directive.Interval)
			ack.JitterMs = wire.DurMS(res.directive.Jitter)
			ack.TimeoutMs = wire.DurMS(res.directive.Timeout)
		}
		if err := stream.Send(&ack); err != nil {
			return err
		}
	}
}
