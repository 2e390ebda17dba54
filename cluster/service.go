package cluster

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/fb4b1dcc/pulse/ingest"
	pulsev1 "github.com/fb4b1dcc/pulse/proto/pulse/v1"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// service serves pulse.v1.Cluster.
type service struct {
	pulsev1.UnimplementedClusterServer
	n *Node
}

// auth checks the cluster token, in constant time.
func (s *service) auth(ctx context.Context) error {
	want := s.n.cfg.Token
	if len(want) == 0 {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if tok, ok := strings.CutPrefix(v, "Bearer "); ok && subtle.ConstantTimeCompare([]byte(tok), want) == 1 {
			return nil
		}
	}
	s.n.stats.unauthenticated.Add(1)
	return grpcstatus.Error(codes.Unauthenticated, "cluster: missing or wrong cluster token (cluster.token must be the same on every node)")
}

// Forward observes beats another node received for instances this node
// owns.
func (s *service) Forward(ctx context.Context, req *pulsev1.ForwardRequest) (resp *pulsev1.ForwardResponse, err error) {
	defer recoverRPC(s.n, &err)
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	n := s.n
	if !n.serving.Load() {
		return nil, grpcstatus.Error(codes.Unavailable, "cluster: node not running")
	}
	now := time.Now()
	obs := make([]ingest.Observation, 0, len(req.GetBeats()))
	var misrouted uint32
	for _, b := range req.GetBeats() {
		o, ok := decodeBeat(b, now)
		if !ok {
			n.stats.malformed.Add(1)
			continue
		}
		if !n.Owns(o.Service, o.Instance) {
			// Views differ for a moment: drop rather than bounce it on.
			misrouted++
			continue
		}
		obs = append(obs, o)
	}
	if len(obs) > 0 {
		n.mon.ObserveBatch(obs)
	}
	n.stats.forwardReceived.Add(uint64(len(obs)))
	n.stats.misrouted.Add(uint64(misrouted))
	return &pulsev1.ForwardResponse{Accepted: uint32(len(obs)), Misrouted: misrouted}, nil
}

// Confirm probes an instance from this node's vantage point.
func (s *service) Confirm(ctx context.Context, req *pulsev1.ConfirmRequest) (resp *pulsev1.ConfirmResponse, err error) {
	defer recoverRPC(s.n, &err)
	if err := s.auth(ctx); err != nil {
		return nil, err
	}
	if !s.n.serving.Load() {
		return nil, grpcstatus.Error(codes.Unavailable, "cluster: node not running")
	}
	return s.n.probeFor(ctx, req), nil
}

func recoverRPC(n *Node, err *error) {
	if r := recover(); r != nil {
		n.stats.panics.Add(1)
		*err = grpcstatus.Error(codes.Internal, fmt.Sprintf("cluster: handler failed: %v", r))
	}
}

func encodeBeat(o *ingest.Observation, now time.Time) *pulsev1.ForwardedBeat {
	b := &pulsev1.ForwardedBeat{Service: o.Service, Instance: o.Instance, Transport: uint32(o.Transport),
		Epoch: o.Epoch, Seq: o.Seq, SentAtNs: int64(o.SentAt), AgeNs: int64(now.Sub(o.ReceivedAt)),
		RttNs: int64(o.RTT), IntervalNs: int64(o.Interval), Status: pulsev1.HealthStatus(o.Status),
		Reason: uint32(o.Reason), Attempt: uint32(o.Attempt)}
	if tc := o.TraceParent; tc.TraceID != ([16]byte{}) {
		b.TraceId, b.SpanId, b.TraceFlags = tc.TraceID[:], tc.ParentID[:], uint32(tc.Flags)
	}
	if o.Peer.IsValid() {
		b.Peer = o.Peer.String()
	}
	return b
}

// maxAge bounds how far back a forwarded beat may be dated: a batch that
// took longer than this to arrive is dated now.
const maxAge = 10 * time.Second

func decodeBeat(b *pulsev1.ForwardedBeat, now time.Time) (ingest.Observation, bool) {
	if b.GetService() == "" || b.GetInstance() == "" || len(b.GetService()) > 256 || len(b.GetInstance()) > 256 ||
		b.GetStatus() < 0 || b.GetStatus() > pulsev1.HealthStatus_HEALTH_STATUS_UNHEALTHY || b.GetTransport() > uint32(wire.GRPC) {
		return ingest.Observation{}, false
	}
	age := time.Duration(b.GetAgeNs())
	if age < 0 || age > maxAge {
		age = 0
	}
	o := ingest.Observation{Service: b.GetService(), Instance: b.GetInstance(), Source: ingest.Passive,
		Transport: wire.Transport(b.GetTransport()), Epoch: b.GetEpoch(), Seq: b.GetSeq(),
		SentAt: time.Duration(b.GetSentAtNs()), ReceivedAt: now.Add(-age), RTT: max(time.Duration(b.GetRttNs()), 0),
		Interval: max(time.Duration(b.GetIntervalNs()), 0), Status: status.Status(b.GetStatus()),
		Reason: wire.Reason(min(b.GetReason(), 0xffff)), Attempt: uint8(min(b.GetAttempt(), 255))}
	if len(b.GetTraceId()) == 16 && len(b.GetSpanId()) == 8 {
		copy(o.TraceParent.TraceID[:], b.GetTraceId())
		copy(o.TraceParent.ParentID[:], b.GetSpanId())
		o.TraceParent.Flags = uint8(b.GetTraceFlags())
	}
	if p, err := netip.ParseAddrPort(b.GetPeer()); err == nil {
		o.Peer = p
	}
	return o, true
}

// peerSet holds one gRPC connection per peer.
type peerSet struct {
	n      *Node
	mu     sync.Mutex
	conns  map[string]*peerConn
	closed bool
}

type peerConn struct {
	addr   string
	cc     *grpc.ClientConn
	client pulsev1.ClusterClient
}

func newPeerSet(n *Node) *peerSet { return &peerSet{n: n, conns: map[string]*peerConn{}} }

// client returns the connection to m, dialling (lazily) if needed.
func (p *peerSet) client(m Member) (pulsev1.ClusterClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, grpcstatus.Error(codes.Unavailable, "cluster: stopping")
	}
	if c := p.conns[m.ID]; c != nil && c.addr == m.GRPC {
		return c.client, nil
	} else if c != nil {
		c.cc.Close() // the peer restarted on another address
		delete(p.conns, m.ID)
	}
	creds := insecure.NewCredentials()
	if p.n.cfg.PeerTLS != nil {
		creds = credentials.NewTLS(p.n.cfg.PeerTLS)
	}
	cc, err := grpc.NewClient(m.GRPC, grpc.WithTransportCredentials(creds),
		// Within the daemon's enforcement policy (pings no more often than 5s).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}))
	if err != nil {
		return nil, fmt.Errorf("cluster: dialling %s at %s: %w", m.ID, m.GRPC, err)
	}
	c := &peerConn{addr: m.GRPC, cc: cc, client: pulsev1.NewClusterClient(cc)}
	p.conns[m.ID] = c
	return c.client, nil
}

// retain closes the connections of nodes that left the view.
func (p *peerSet) retain(r *Ring) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, c := range p.conns {
		if !r.Has(id) {
			c.cc.Close()
			delete(p.conns, id)
		}
	}
}

func (p *peerSet) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for id, c := range p.conns {
		c.cc.Close()
		delete(p.conns, id)
	}
}

// peerCtx adds the cluster token to an outgoing call.
func (n *Node) peerCtx(ctx context.Context) context.Context {
	if len(n.cfg.Token) == 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+string(n.cfg.Token))
}
