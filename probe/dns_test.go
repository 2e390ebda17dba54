package probe

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/fb4b1dcc/pulse/status"
)

// dnsServer is a tiny authoritative DNS server on loopback UDP answering A
// queries from a fixed table and NXDOMAIN for anything else.
type dnsServer struct {
	pc      net.PacketConn
	done    chan struct{}
	queries atomic.Int64
	delay   atomic.Int64
}

func newDNSServer(t testing.TB, table map[string]string) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{pc: pc, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			s.queries.Add(1)
			if d := time.Duration(s.delay.Load()); d > 0 {
				continue // a server that never answers
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			name := strings.TrimSuffix(q.Name.String(), ".")
			ip, known := table[name]
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true,
				RCode: map[bool]dnsmessage.RCode{true: dnsmessage.RCodeSuccess, false: dnsmessage.RCodeNameError}[known]})
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			if known && q.Type == dnsmessage.TypeA {
				a := netip.MustParseAddr(ip).As4()
				b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: a})
			}
			out, err := b.Finish()
			if err != nil {
				continue
			}
			pc.WriteTo(out, from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-s.done })
	return s
}

func (s *dnsServer) addr() string { return s.pc.LocalAddr().String() }

// resolver sends every query to this server.
func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.addr())
	}}
}

func TestDNSProbe(t *testing.T) {
	srv := newDNSServer(t, map[string]string{"svc.pulse.test": "10.1.2.3"})
	cases := []struct {
		name   string
		target string
		expect []string
		want   status.Status
		class  status.ErrorClass
		reason string
	}{
		{"answer", "svc.pulse.test", nil, status.Healthy, "", "A4 svc.pulse.test: 10.1.2.3"},
		{"expected", "dns://svc.pulse.test", []string{"10.1.2.3"}, status.Healthy, "", "10.1.2.3"},
		{"unexpected", "svc.pulse.test", []string{"10.9.9.9"}, status.Unhealthy, status.ClassCondition, "expected 10.9.9.9, got 10.1.2.3"},
		{"nxdomain", "gone.pulse.test", nil, status.Unhealthy, status.ClassDNS, "no such host"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pr := mustNew(t, Module{Kind: KindDNS, Timeout: time.Second, DNS: DNSConfig{Server: srv.addr(), Type: "A4", Expect: c.expect}})
			r := pr.Probe(context.Background(), c.target)
			if r.Status != c.want || r.Class != c.class || !strings.Contains(r.Reason, c.reason) {
				t.Fatalf("got %v/%q %q; want %v/%q ~%q", r.Status, r.Class, r.Reason, c.want, c.class, c.reason)
			}
			if r.Phases.DNS <= 0 {
				t.Fatalf("no DNS phase: %+v", r.Phases)
			}
		})
	}
	t.Run("silent server", func(t *testing.T) {
		srv.delay.Store(1)
		defer srv.delay.Store(0)
		pr := mustNew(t, Module{Kind: KindDNS, Timeout: 500 * time.Millisecond, DNS: DNSConfig{Server: srv.addr(), Type: "A4"}})
		start := time.Now()
		r := pr.Probe(context.Background(), "svc.pulse.test")
		if r.Status != status.Unhealthy || r.Class != status.ClassTimeout {
			t.Fatalf("got %v/%q %q", r.Status, r.Class, r.Reason)
		}
		if took := time.Since(start); took > 750*time.Millisecond {
			t.Fatalf("took %v", took)
		}
	})
}

// TestHTTPResolvesNames: a target by name gets a DNS phase of its own.
func TestHTTPResolvesNames(t *testing.T) {
	srv := newDNSServer(t, map[string]string{"svc.pulse.test": "127.0.0.1"})
	p := newPKI(t)
	ts := newTLSServer(t, p, okHandler(), true)
	_, port, _ := net.SplitHostPort(ts.Listener.Addr().String())
	pr := mustNew(t, businessModule(p), WithResolver(srv.resolver()))
	r := pr.Probe(context.Background(), "https://svc.pulse.test:"+port+"/")
	if r.Status != status.Healthy || r.Phases.DNS <= 0 || r.Peer != ts.Listener.Addr().String() {
		t.Fatalf("%v %q phases %+v peer %q", r.Status, r.Reason, r.Phases, r.Peer)
	}
}
