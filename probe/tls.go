package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/fb4b1dcc/pulse/condition"
	"github.com/fb4b1dcc/pulse/status"
)

type tlsProber struct {
	*base
	cfg   *tls.Config
	conds *condition.Set
}

func newTLSProber(m Module, b *base) (*tlsProber, error) {
	cfg, err := m.TLS.build()
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	// Every TLS probe measures a real handshake: no resumption.
	cfg.ClientSessionCache = nil
	conds, err := compileConditions(m.Conditions)
	if err != nil {
		return nil, err
	}
	return &tlsProber{base: b, cfg: cfg, conds: conds}, nil
}

// Probe handshakes with target ("host:port", default port 443) and judges
// the certificate: expired is unhealthy, under Module.ExpiryWarning
// degraded.
func (p *tlsProber) Probe(ctx context.Context, target string) (r Result) {
	return p.run(ctx, KindTLS, target, func(ctx context.Context, rec *recorder, r *Result, start time.Time) {
		host, port, err := hostPort(target, "443")
		if err != nil {
			r.fail(status.WithClass(status.ClassOther, err))
			return
		}
		c, err := p.dialer.dial(ctx, "tcp", net.JoinHostPort(host, port), rec)
		if err != nil {
			r.fail(err)
			return
		}
		r.Peer = c.RemoteAddr().String()
		tc, err := p.dialer.handshake(ctx, c, forHost(p.cfg, host), rec)
		if err != nil {
			r.fail(err)
			return
		}
		tc.Close()
		cs := tc.ConnectionState()
		r.Connected, r.Handshakes = true, 1
		info := tlsInfo(&cs)
		if info != nil {
			r.TLSNotAfter = info.NotAfter
		}
		r.Latency = time.Since(start)
		now := p.clock.Now()
		v := p.conds.Eval(context.WithoutCancel(ctx), &condition.Input{Latency: r.Latency, TLS: info, Now: now})
		r.Status = status.Healthy
		r.Reason = fmt.Sprintf("%s, certificate valid until %s", tls.VersionName(cs.Version), r.TLSNotAfter.UTC().Format(time.RFC3339))
		r.judge(v)
		if r.Status != status.Unhealthy {
			if deg, exp, why := expiry(info, now, p.m.ExpiryWarning); exp {
				r.fail(status.Errorf(status.ClassTLS, "%s", why))
			} else if deg {
				r.Status, r.Class, r.Reason, r.Err = status.Degraded, status.ClassTLS, why, nil
			}
		}
	})
}

// Close cancels probes in flight.
func (p *tlsProber) Close() error {
	p.close()
	return nil
}
