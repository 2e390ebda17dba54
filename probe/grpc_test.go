package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/fb4b1dcc/pulse/internal/faultnet/toxi"
	"github.com/fb4b1dcc/pulse/status"
)

// grpcServer is a real grpc-go server with the standard health service.
type grpcServer struct {
	addr       string
	health     *health.Server
	srv        *grpc.Server
	handshakes atomic.Int64
	parent     atomic.Value // last traceparent received
	done       chan struct{}
}

type grpcServerOpts struct {
	pki        *pki
	clientAuth tls.ClientAuthType
	noHealth   bool
	addr       string
}

func newGRPCServer(t testing.TB, o grpcServerOpts) *grpcServer {
	t.Helper()
	addr := o.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &grpcServer{addr: ln.Addr().String(), health: health.NewServer(), done: make(chan struct{})}
	opts := []grpc.ServerOption{grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("traceparent")) > 0 {
			s.parent.Store(md.Get("traceparent")[0])
		}
		return h(ctx, req)
	})}
	if o.pki != nil {
		pool := x509.NewCertPool()
		pool.AddCert(o.pki.caCert)
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{o.pki.server(t)},
			ClientAuth:   o.clientAuth,
			ClientCAs:    pool,
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				s.handshakes.Add(1)
				return nil, nil
			},
		})))
	}
	s.srv = grpc.NewServer(opts...)
	if !o.noHealth {
		healthpb.RegisterHealthServer(s.srv, s.health)
	}
	go func() { defer close(s.done); s.srv.Serve(ln) }()
	t.Cleanup(s.stop)
	return s
}

func (s *grpcServer) stop() {
	s.srv.Stop()
	<-s.done
}

func TestGRPCHealth(t *testing.T) {
	p := newPKI(t)
	srv := newGRPCServer(t, grpcServerOpts{pki: p})
	srv.health.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)
	m := Module{Kind: KindGRPC, Timeout: time.Second, TLS: TLSClientConfig{CAPEM: p.caPEM}, GRPC: GRPCConfig{TLS: true}}

	pr := mustNew(t, m)
	first := pr.Probe(context.Background(), "grpc://"+srv.addr)
	if first.Status != status.Healthy || first.GRPCStatus != "SERVING" || first.Reason != "SERVING" ||
		first.Handshakes != 1 || first.Phases.TLS <= 0 || first.Phases.Connect <= 0 || first.Reused {
		t.Fatalf("first probe: %+v", first)
	}
	if first.TLSNotAfter.IsZero() || !first.Connected || first.Peer != srv.addr {
		t.Fatalf("first probe TLS/peer: %+v", first)
	}
	for i := range 200 {
		r := pr.Probe(context.Background(), srv.addr)
		if r.Status != status.Healthy || !r.Reused || r.Handshakes != 0 || r.Phases.TLS != 0 {
			t.Fatalf("probe %d: %+v", i, r)
		}
	}
	if n := srv.handshakes.Load(); n != 1 {
		t.Fatalf("server saw %d TLS handshakes for 201 probes, want 1 (one ClientConn per target)", n)
	}

	srv.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	r := pr.Probe(context.Background(), srv.addr)
	if r.Status != status.Unhealthy || r.Class != status.ClassCondition || r.GRPCStatus != "NOT_SERVING" ||
		r.Reason != `service "" is NOT_SERVING` || !r.Connected {
		t.Fatalf("NOT_SERVING: %+v", r)
	}

	m.GRPC.Service = "orders"
	if r := mustNew(t, m).Probe(context.Background(), srv.addr); r.Status != status.Healthy {
		t.Fatalf("orders: %v %q", r.Status, r.Reason)
	}
	m.GRPC.Service = "nope"
	r = mustNew(t, m).Probe(context.Background(), srv.addr)
	if r.Status != status.Unhealthy || r.Class != status.ClassProtocol || r.GRPCStatus != "SERVICE_UNKNOWN" ||
		!strings.Contains(r.Reason, `SERVICE_UNKNOWN: service "nope" is not known`) || !r.Connected {
		t.Fatalf("unknown service: %+v", r)
	}
}

func TestGRPCTraceAndMetadata(t *testing.T) {
	srv := newGRPCServer(t, grpcServerOpts{})
	tp, sr := newTestTracer(t)
	pr := mustNew(t, Module{Kind: KindGRPC, GRPC: GRPCConfig{Metadata: map[string]string{"x-probe": "1"}}}, WithTracerProvider(tp))
	r := pr.Probe(context.Background(), srv.addr)
	if r.Status != status.Healthy {
		t.Fatalf("%v %q", r.Status, r.Reason)
	}
	want := fmt.Sprintf("00-%s-%s-01", r.TraceID, r.SpanID)
	if got, _ := srv.parent.Load().(string); got != want || r.TraceID == "" {
		t.Fatalf("server got traceparent %q, want %q", got, want)
	}
	names := map[string]bool{}
	for _, s := range sr.Ended() {
		names[s.Name()] = true
	}
	if !names["probe grpc"] || !names["connect"] || !names["ttfb"] {
		t.Fatalf("spans: %v", names)
	}
}

func TestGRPCmTLS(t *testing.T) {
	p := newPKI(t)
	srv := newGRPCServer(t, grpcServerOpts{pki: p, clientAuth: tls.RequireAndVerifyClientCert})
	m := Module{Kind: KindGRPC, Timeout: time.Second, TLS: TLSClientConfig{CAPEM: p.caPEM}, GRPC: GRPCConfig{TLS: true}}
	if r := mustNew(t, m).Probe(context.Background(), srv.addr); r.Status != status.Unhealthy {
		t.Fatalf("without a client certificate: %v %q", r.Status, r.Reason)
	}
	_, c, k := p.issue(t, "prober", true, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	m.TLS.CertPEM, m.TLS.KeyPEM = c, k
	if r := mustNew(t, m).Probe(context.Background(), srv.addr); r.Status != status.Healthy {
		t.Fatalf("with a client certificate: %v %q", r.Status, r.Reason)
	}
}

// TestGRPCRefusedThenRecovers: a refused target fails fast with class
// refused; once the server is up, the next probe succeeds (the channel's
// reconnect back-off does not hold the verdict down).
func TestGRPCRefusedThenRecovers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	pr := mustNew(t, Module{Kind: KindGRPC, Timeout: 2 * time.Second})
	for range 3 {
		start := time.Now()
		r := pr.Probe(context.Background(), addr)
		if r.Status != status.Unhealthy || r.Class != status.ClassRefused || r.Connected {
			t.Fatalf("refused: %v/%q connected=%v %q", r.Status, r.Class, r.Connected, r.Reason)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("refused probe took %v, want fast failure", took)
		}
	}
	newGRPCServer(t, grpcServerOpts{addr: addr})
	r := pr.Probe(context.Background(), addr)
	if r.Status != status.Healthy {
		t.Fatalf("after the server came up: %v/%q %q", r.Status, r.Class, r.Reason)
	}
}

func TestGRPCUnimplemented(t *testing.T) {
	srv := newGRPCServer(t, grpcServerOpts{noHealth: true})
	r := mustNew(t, Module{Kind: KindGRPC}).Probe(context.Background(), srv.addr)
	if r.Status != status.Unhealthy || r.Class != status.ClassProtocol || !r.Connected ||
		!strings.Contains(r.Reason, "does not implement grpc.health.v1") {
		t.Fatalf("%+v", r)
	}
}

// TestGRPCBlackholedConnection: the pooled ClientConn's connection is
// black-holed; the next probe answers over a fresh ClientConn within one
// timeout, and that one stays pooled.
func TestGRPCBlackholedConnection(t *testing.T) {
	srv := newGRPCServer(t, grpcServerOpts{})
	proxy, err := toxi.New(srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	var dials atomic.Int64
	route := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		if dials.Add(1) == 1 {
			return d.DialContext(ctx, network, proxy.Addr())
		}
		return d.DialContext(ctx, network, srv.addr)
	}
	m := Module{Kind: KindGRPC, Timeout: time.Second}
	pr := mustNew(t, m, WithDialer(route))
	target := proxy.Addr()
	for range 2 {
		if r := pr.Probe(context.Background(), target); r.Status != status.Healthy {
			t.Fatalf("warm-up: %v %q", r.Status, r.Reason)
		}
	}
	if err := proxy.Blackhole(); err != nil {
		t.Fatal(err)
	}
	r := pr.Probe(context.Background(), target)
	if r.Status != status.Healthy || !r.Retried || r.Latency >= m.Timeout {
		t.Fatalf("after blackhole: %v %q retried=%v latency=%v", r.Status, r.Reason, r.Retried, r.Latency)
	}
	for range 3 {
		if r := pr.Probe(context.Background(), target); r.Status != status.Healthy || r.Retried || !r.Reused {
			t.Fatalf("after recovery: %v retried=%v reused=%v %q", r.Status, r.Retried, r.Reused, r.Reason)
		}
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials, want 2", n)
	}
}
