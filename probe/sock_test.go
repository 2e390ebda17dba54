package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/clock/clocktest"
	"github.com/fb4b1dcc/pulse/condition"
	"github.com/fb4b1dcc/pulse/status"
)

// lineServer answers each line with handle(line); banner, if set, is sent
// on connect.
func lineServer(t testing.TB, banner string, handle func(string) string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	conns := make(chan net.Conn, 64)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() {
				defer c.Close()
				if banner != "" {
					c.Write([]byte(banner))
				}
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(handle(strings.TrimSpace(line))))
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func closedPort(t testing.TB, network string) string {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := pc.LocalAddr().String()
		pc.Close()
		return a
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func TestTCPProbe(t *testing.T) {
	redis := lineServer(t, "", func(l string) string {
		if l == "PING" {
			return "+PONG\r\n"
		}
		return "-ERR unknown\r\n"
	})
	ssh := lineServer(t, "SSH-2.0-OpenSSH_9.6\r\n", func(string) string { return "" })
	silent := newSilentListener(t)
	cases := []struct {
		name   string
		cfg    TCPConfig
		conds  condition.Spec
		target string
		want   status.Status
		class  status.ErrorClass
		reason string
	}{
		{"connect only", TCPConfig{}, condition.Spec{}, "tcp://" + redis, status.Healthy, "", "connected"},
		{"send expect", TCPConfig{Send: "PING\r\n", Expect: `^\+PONG`}, condition.Spec{}, redis, status.Healthy, "", `reply "+PONG\r\n"`},
		{"expect mismatch", TCPConfig{Send: "HELLO\r\n", Expect: `^\+PONG`}, condition.Spec{}, redis, status.Unhealthy, status.ClassCondition, `reply does not match /^\+PONG/: got "-ERR unknown\r\n"`},
		{"banner", TCPConfig{Expect: `^SSH-2\.0-`}, condition.Spec{}, ssh, status.Healthy, "", "SSH-2.0-OpenSSH_9.6"},
		{"condition on reply", TCPConfig{}, condition.Spec{Healthy: []string{`body.contains("OpenSSH_10")`}}, ssh, status.Unhealthy, status.ClassCondition, "condition body.contains"},
		{"refused", TCPConfig{}, condition.Spec{}, closedPort(t, "tcp"), status.Unhealthy, status.ClassRefused, "connection refused"},
		{"silent", TCPConfig{Send: "PING\r\n", Expect: "PONG"}, condition.Spec{}, silent.Addr(), status.Unhealthy, status.ClassTimeout, "timeout waiting for the reply"},
		{"bad target", TCPConfig{}, condition.Spec{}, "localhost", status.Unhealthy, status.ClassOther, "want host:port"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pr := mustNew(t, Module{Kind: KindTCP, Timeout: 500 * time.Millisecond, TCP: c.cfg, Conditions: c.conds})
			start := time.Now()
			r := pr.Probe(context.Background(), c.target)
			if r.Status != c.want || r.Class != c.class || !strings.Contains(r.Reason, c.reason) {
				t.Fatalf("got %v/%q %q; want %v/%q ~%q", r.Status, r.Class, r.Reason, c.want, c.class, c.reason)
			}
			if took := time.Since(start); took > 750*time.Millisecond {
				t.Fatalf("took %v", took)
			}
			if c.want == status.Healthy && (r.Phases.Connect <= 0 || r.Latency <= 0) {
				t.Fatalf("phases %+v latency %v", r.Phases, r.Latency)
			}
		})
	}
}

func TestTLSProbe(t *testing.T) {
	p := newPKI(t)
	serve := func(cert tls.Certificate) string {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		t.Cleanup(func() { ln.Close(); <-done })
		return ln.Addr().String()
	}
	now := time.Now()
	good, _, _ := p.issue(t, "good", false, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	soon, _, _ := p.issue(t, "soon", false, now.Add(-time.Hour), now.Add(72*time.Hour))
	gone, _, _ := p.issue(t, "gone", false, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	goodAddr, soonAddr, goneAddr := serve(good), serve(soon), serve(gone)

	cases := []struct {
		name   string
		tlsCfg TLSClientConfig
		clk    *clocktest.Fake
		target string
		want   status.Status
		class  status.ErrorClass
		reason string
	}{
		{"valid", TLSClientConfig{CAPEM: p.caPEM}, nil, goodAddr, status.Healthy, "", "certificate valid until"},
		{"expires soon", TLSClientConfig{CAPEM: p.caPEM}, nil, soonAddr, status.Degraded, status.ClassTLS, "certificate CN=soon expires in 7"},
		{"expired", TLSClientConfig{CAPEM: p.caPEM}, nil, goneAddr, status.Unhealthy, status.ClassTLS, "expired"},
		{"expired, verification off", TLSClientConfig{InsecureSkipVerify: true}, nil, goneAddr, status.Unhealthy, status.ClassTLS, "certificate CN=gone expired 24h"},
		{"valid, clock 80 days on", TLSClientConfig{CAPEM: p.caPEM, InsecureSkipVerify: true}, clocktest.NewFake(now.Add(80 * 24 * time.Hour)), goodAddr, status.Degraded, status.ClassTLS, "under the 336h0m0s warning"},
		{"unknown CA", TLSClientConfig{}, nil, goodAddr, status.Unhealthy, status.ClassTLS, "unknown authority"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var opts []Option
			if c.clk != nil {
				opts = append(opts, WithClock(c.clk))
			}
			pr := mustNew(t, Module{Kind: KindTLS, Timeout: time.Second, TLS: c.tlsCfg}, opts...)
			r := pr.Probe(context.Background(), "tls://"+c.target)
			if r.Status != c.want || r.Class != c.class || !strings.Contains(r.Reason, c.reason) {
				t.Fatalf("got %v/%q %q; want %v/%q ~%q", r.Status, r.Class, r.Reason, c.want, c.class, c.reason)
			}
			if c.want != status.Unhealthy && (r.Phases.TLS <= 0 || r.TLSNotAfter.IsZero() || r.Handshakes != 1) {
				t.Fatalf("fields: %+v", r)
			}
		})
	}
	t.Run("condition on tls", func(t *testing.T) {
		pr := mustNew(t, Module{Kind: KindTLS, TLS: TLSClientConfig{CAPEM: p.caPEM},
			Conditions: condition.Spec{Healthy: []string{`tls.not_after - now > duration("2400h")`}}})
		r := pr.Probe(context.Background(), goodAddr)
		if r.Status != status.Unhealthy || !strings.Contains(r.Reason, "tls.not_after=") {
			t.Fatalf("%v %q", r.Status, r.Reason)
		}
	})
}

func TestUDPProbe(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if string(buf[:n]) == "quiet" {
				continue
			}
			pc.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	defer func() { pc.Close(); <-done }()
	addr := pc.LocalAddr().String()
	cases := []struct {
		name   string
		cfg    UDPConfig
		target string
		want   status.Status
		class  status.ErrorClass
		reason string
	}{
		{"reply", UDPConfig{Send: "ping", Expect: "^echo:ping$"}, "udp://" + addr, status.Healthy, "", `reply "echo:ping"`},
		{"mismatch", UDPConfig{Send: "ping", Expect: "^pong"}, addr, status.Unhealthy, status.ClassCondition, "does not match"},
		{"no reply", UDPConfig{Send: "quiet"}, addr, status.Unhealthy, status.ClassTimeout, "timeout waiting for the reply"},
		{"port unreachable", UDPConfig{Send: "ping"}, closedPort(t, "udp"), status.Unhealthy, status.ClassRefused, "refused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pr := mustNew(t, Module{Kind: KindUDP, Timeout: 500 * time.Millisecond, UDP: c.cfg})
			start := time.Now()
			r := pr.Probe(context.Background(), c.target)
			if r.Status != c.want || r.Class != c.class || !strings.Contains(r.Reason, c.reason) {
				t.Fatalf("got %v/%q %q; want %v/%q ~%q", r.Status, r.Class, r.Reason, c.want, c.class, c.reason)
			}
			if took := time.Since(start); took > 750*time.Millisecond {
				t.Fatalf("took %v", took)
			}
		})
	}
}
