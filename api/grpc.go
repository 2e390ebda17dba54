package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/monitor"
	pulsev1 "github.com/fb4b1dcc/pulse/proto/pulse/v1"
	"github.com/fb4b1dcc/pulse/store"
)

// grpcServer is pulse.v1.Monitor: Beat is ingest's, List and Watch are
// served from the same monitor state as REST.
type grpcServer struct {
	pulsev1.UnimplementedMonitorServer
	m    *monitor.Monitor
	recv *ingest.Receiver
	a    *API
}

// RegisterGRPC registers pulse.v1.Monitor on s. recv may be nil (no Beat).
func RegisterGRPC(s grpc.ServiceRegistrar, m *monitor.Monitor, recv *ingest.Receiver, a *API) {
	pulsev1.RegisterMonitorServer(s, &grpcServer{m: m, recv: recv, a: a})
}

func (g *grpcServer) Beat(stream pulsev1.Monitor_BeatServer) error {
	if g.recv == nil {
		return status.Error(codes.Unimplemented, "this server does not ingest beats")
	}
	return g.recv.Beat(stream)
}

// authorize checks the bearer token in the "authorization" metadata.
func (g *grpcServer) authorize(ctx context.Context) error {
	toks := *g.a.tokens.Load()
	if len(toks) == 0 {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	got := ""
	if v := md.Get("authorization"); len(v) > 0 && len(v[0]) > 7 && strings.EqualFold(v[0][:7], "bearer ") {
		got = strings.TrimSpace(v[0][7:])
	}
	ok := 0
	for _, t := range toks {
		ok |= subtle.ConstantTimeCompare([]byte(got), t)
	}
	if ok != 1 {
		return status.Error(codes.Unauthenticated, `send "authorization: Bearer <token>" metadata with one of api.tokens`)
	}
	return nil
}

func (g *grpcServer) List(ctx context.Context, req *pulsev1.ListRequest) (*pulsev1.ListResponse, error) {
	if err := g.authorize(ctx); err != nil {
		return nil, err
	}
	var states []monitor.State
	for _, s := range req.GetStates() {
		st, err := monitor.ParseState(s)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		states = append(states, st)
	}
	resp := &pulsev1.ListResponse{LastSeq: g.m.LastSeq()}
	var services []string
	if req.GetService() != "" {
		services = []string{req.GetService()}
	} else {
		for _, s := range g.m.Services() {
			services = append(services, s.Name)
		}
	}
	for _, svc := range services {
		list, _, err := g.m.Instances(svc, monitor.Filter{States: states, Zone: req.GetZone()})
		if err != nil {
			if errors.Is(err, monitor.ErrNotFound) {
				return nil, status.Error(codes.NotFound, err.Error())
			}
			return nil, status.Error(codes.Internal, err.Error())
		}
		for _, v := range list {
			resp.Instances = append(resp.Instances, toProto(v))
		}
	}
	return resp, nil
}

func unixNano(t interface{ UnixNano() int64 }, zero bool) int64 {
	if zero {
		return 0
	}
	return t.UnixNano()
}

func toProto(v monitor.InstanceView) *pulsev1.Instance {
	return &pulsev1.Instance{Service: v.Service, Instance: v.Instance, Zone: v.Zone, State: v.State.String(), Reason: v.Reason,
		Source: v.Source, SinceUnixNano: unixNano(v.Since, v.Since.IsZero()), LastBeatUnixNano: unixNano(v.LastBeat, v.LastBeat.IsZero()),
		LastProbeUnixNano: unixNano(v.LastProbe, v.LastProbe.IsZero()), RttNs: int64(v.RTT), Suspicion: v.Suspicion,
		Labels: v.Labels, Sources: v.Sources, TraceId: v.TraceID}
}

func eventProto(e store.Event) *pulsev1.Event {
	return &pulsev1.Event{Seq: e.Seq, TimeUnixNano: e.Time.UnixNano(), Service: e.Service, Instance: e.Instance, Zone: e.Zone,
		From: e.From, To: e.To, Reason: e.Reason, Source: e.Source, TraceId: e.TraceID}
}

// Watch streams events like the SSE endpoint. A slow client blocks only
// its own stream (gRPC flow control), never the monitor.
func (g *grpcServer) Watch(req *pulsev1.WatchRequest, stream pulsev1.Monitor_WatchServer) error {
	ctx := stream.Context()
	if err := g.authorize(ctx); err != nil {
		return err
	}
	after := req.GetAfterSeq()
	if req.GetFromNow() {
		after = g.m.LastSeq()
	}
	wt := g.m.Watch(after)
	defer wt.Close()
	last := after
	emit := func(evs []store.Event) error {
		for _, e := range evs {
			if e.Seq <= last {
				continue
			}
			last = e.Seq
			if req.GetService() != "" && e.Service != req.GetService() {
				continue
			}
			if err := stream.Send(eventProto(e)); err != nil {
				return err
			}
		}
		return nil
	}
	buf := make([]store.Event, 0, 256)
	for {
		evs, err := wt.Next(buf[:0], 256)
		switch {
		case errors.Is(err, monitor.ErrGap):
			if err := g.a.fillGap(ctx, &last, wt.Cursor(), emit); err != nil {
				return status.Error(codes.DataLoss, err.Error())
			}
			continue
		case errors.Is(err, monitor.ErrClosed):
			emit(evs)
			return status.Error(codes.Unavailable, "the monitor is shutting down; reconnect with after_seq to resume")
		}
		if err := emit(evs); err != nil {
			return err
		}
		if len(evs) == cap(buf) {
			continue
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case _, ok := <-wt.C():
			if !ok {
				emit(nil)
				return status.Error(codes.Unavailable, "the monitor is shutting down; reconnect with after_seq to resume")
			}
		}
	}
}
