package ingest

import (
	"context"
	"net"
	"testing"
	"time"

	pulsev1 "github.com/fb4b1dcc/pulse/proto/pulse/v1"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
)

func TestGRPCBeat(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := start(t, func(c *Config) {
		c.GRPCListener = ln
		c.Directives = func(string, string) wire.Directive {
			return wire.Directive{Interval: 2 * time.Second, Jitter: 200 * time.Millisecond}
		}
	})
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cl := pulsev1.NewMonitorClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// No token: the stream ends UNAUTHENTICATED.
	s0, err := cl.Beat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s0.Send(&pulsev1.BeatRequest{Service: "api", Instance: "api-1", Seq: 1})
	if _, err := s0.Recv(); grpcstatus.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}

	sctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+testToken)
	s, err := cl.Beat(sctx)
	if err != nil {
		t.Fatal(err)
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	req := &pulsev1.BeatRequest{Service: "api", Instance: "api-1", Epoch: 9, Seq: 1, SentAtNs: 5e9,
		Status: pulsev1.HealthStatus_HEALTH_STATUS_UNHEALTHY, Reason: uint32(wire.ReasonDraining), IntervalMs: 1000, RttUs: 40, Traceparent: tp}
	exchange := func(r *pulsev1.BeatRequest) *pulsev1.BeatAck {
		t.Helper()
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
		a, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := exchange(req)
	if a.Code != pulsev1.BeatAck_CODE_ACCEPTED || a.Seq != 1 || a.Epoch != 9 || a.SentAtNs != 5e9 || a.IntervalMs != 2000 || a.JitterMs != 200 {
		t.Fatalf("ack %v", a)
	}
	o := g.sink.waitN(t, 1)[0]
	if o.Transport != wire.GRPC || o.Status != status.Unhealthy || o.Reason != wire.ReasonDraining || o.TraceParent.String() != tp ||
		o.RTT != 40*time.Microsecond || !o.Peer.Addr().IsLoopback() {
		t.Fatalf("observation %+v", o)
	}
	if a := exchange(req); a.Code != pulsev1.BeatAck_CODE_DUPLICATE {
		t.Fatalf("duplicate: %v", a)
	}
	bad := &pulsev1.BeatRequest{Service: "api", Instance: "", Seq: 2}
	if a := exchange(bad); a.Code != pulsev1.BeatAck_CODE_MALFORMED || a.Message == "" {
		t.Fatalf("malformed: %v", a)
	}
	old := &pulsev1.BeatRequest{Service: "api", Instance: "api-1", Epoch: 8, Seq: 2, Status: pulsev1.HealthStatus_HEALTH_STATUS_HEALTHY}
	if a := exchange(old); a.Code != pulsev1.BeatAck_CODE_REPLAY {
		t.Fatalf("replay: %v", a)
	}
	// A beat for a service the token does not cover ends the stream.
	if err := s.Send(&pulsev1.BeatRequest{Service: "web", Instance: "w", Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); grpcstatus.Code(err) != codes.Unauthenticated {
		t.Fatalf("other service: %v", err)
	}
	st := g.r.Stats()
	if st.Received[wire.GRPC] != 5 || st.Accepted[wire.GRPC] != 1 || st.Drops(DropAuth) != 2 || st.Drops(DropDuplicate) != 1 ||
		st.Drops(DropMalformed) != 1 || st.Drops(DropReplay) != 1 {
		t.Fatalf("stats %+v", st)
	}
}
