package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/fb4b1dcc/pulse/condition"
	"github.com/fb4b1dcc/pulse/status"
)

// DNSConfig is the dns prober's part of a module: resolve the target name.
type DNSConfig struct {
	// Server is the DNS server ("host:port"); empty uses the system's.
	Server string `yaml:"server,omitempty" json:"server,omitempty"`
	// Type is A (default, addresses of both families when AAAA exists),
	// A4 (IPv4 only), AAAA, CNAME, MX, NS or TXT.
	Type string `yaml:"type,omitempty" json:"type,omitempty"`
	// Expect lists answers that must all be present (addresses, names or
	// text); empty accepts any non-empty answer.
	Expect []string `yaml:"expect,omitempty" json:"expect,omitempty"`
}

type dnsProber struct {
	*base
	cfg      DNSConfig
	resolver *net.Resolver
	conds    *condition.Set
}

func newDNS(m Module, b *base) (*dnsProber, error) {
	cfg := m.DNS
	cfg.Type = strings.ToUpper(cfg.Type)
	if cfg.Type == "" {
		cfg.Type = "A"
	}
	if !slices.Contains([]string{"A", "A4", "AAAA", "CNAME", "MX", "NS", "TXT"}, cfg.Type) {
		return nil, fmt.Errorf("probe: dns.type %q: want A, A4, AAAA, CNAME, MX, NS or TXT", m.DNS.Type)
	}
	conds, err := compileConditions(m.Conditions)
	if err != nil {
		return nil, err
	}
	p := &dnsProber{base: b, cfg: cfg, conds: conds, resolver: b.dialer.resolver}
	if cfg.Server != "" {
		if _, _, err := net.SplitHostPort(cfg.Server); err != nil {
			return nil, fmt.Errorf("probe: dns.server %q: want host:port", cfg.Server)
		}
		// The resolver owns and closes its per-query connections; they are
		// not tracked (the resolver needs the bare *net.UDPConn to frame
		// UDP queries).
		p.resolver = &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				ctx, cancel := p.dialer.bounded(ctx, p.m.DialTimeout)
				defer cancel()
				return p.dialer.nd.DialContext(ctx, network, cfg.Server)
			},
		}
	}
	return p, nil
}

// Probe resolves target (a name, optionally dns://name).
func (p *dnsProber) Probe(ctx context.Context, target string) (r Result) {
	return p.run(ctx, KindDNS, target, func(ctx context.Context, rec *recorder, r *Result, start time.Time) {
		name := strings.TrimSuffix(strings.TrimPrefix(target, "dns://"), "/")
		if name == "" {
			r.fail(status.Errorf(status.ClassOther, "target %q: want a name to resolve", target))
			return
		}
		rec.mark(&rec.dnsStart)
		answers, err := p.lookup(ctx, name)
		rec.mark(&rec.dnsEnd)
		if err != nil {
			cls := status.Classify(err)
			if cls != status.ClassTimeout {
				cls = status.ClassDNS
			}
			r.fail(status.WithClass(cls, fmt.Errorf("resolve %s %s: %w", p.cfg.Type, name, err)))
			return
		}
		r.Connected = true
		r.Body = excerptOf([]byte(strings.Join(answers, "\n")))
		if len(answers) == 0 {
			r.fail(status.Errorf(status.ClassDNS, "resolve %s %s: no answers", p.cfg.Type, name))
			return
		}
		var missing []string
		for _, want := range p.cfg.Expect {
			if !slices.ContainsFunc(answers, func(a string) bool { return sameAnswer(a, want) }) {
				missing = append(missing, want)
			}
		}
		if len(missing) > 0 {
			r.fail(status.Errorf(status.ClassCondition, "%s %s: expected %s, got %s", p.cfg.Type, name,
				strings.Join(missing, ", "), strings.Join(answers, ", ")))
			return
		}
		r.Latency = time.Since(start)
		v := p.conds.Eval(context.WithoutCancel(ctx), &condition.Input{
			Body: []byte(strings.Join(answers, "\n")), Latency: r.Latency, Now: p.clock.Now(),
		})
		r.Status = status.Healthy
		r.Reason = fmt.Sprintf("%s %s: %s", p.cfg.Type, name, strings.Join(answers, ", "))
		r.judge(v)
	})
}

func sameAnswer(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

func (p *dnsProber) lookup(ctx context.Context, name string) ([]string, error) {
	var out []string
	switch p.cfg.Type {
	case "A", "A4", "AAAA":
		network := map[string]string{"A": "ip", "A4": "ip4", "AAAA": "ip6"}[p.cfg.Type]
		ips, err := p.resolver.LookupNetIP(ctx, network, name)
		for _, ip := range ips {
			out = append(out, ip.Unmap().String())
		}
		return out, err
	case "CNAME":
		c, err := p.resolver.LookupCNAME(ctx, name)
		if c != "" {
			out = append(out, c)
		}
		return out, err
	case "MX":
		mxs, err := p.resolver.LookupMX(ctx, name)
		for _, mx := range mxs {
			out = append(out, mx.Host)
		}
		return out, err
	case "NS":
		nss, err := p.resolver.LookupNS(ctx, name)
		for _, ns := range nss {
			out = append(out, ns.Host)
		}
		return out, err
	case "TXT":
		return p.resolver.LookupTXT(ctx, name)
	}
	return nil, errors.New("unsupported type")
}

// Close cancels probes in flight.
func (p *dnsProber) Close() error {
	p.close()
	return nil
}
