package probe

import (
	"context"
	"net"
	"time"

	"github.com/fb4b1dcc/pulse/status"
)

// UDPConfig is the udp prober's part of a module: send a datagram, expect a
// reply.
type UDPConfig struct {
	// Send is the datagram payload.
	Send string `yaml:"send,omitempty" json:"send,omitempty"`
	// Expect is a regular expression the reply must match; empty accepts
	// any reply.
	Expect string `yaml:"expect,omitempty" json:"expect,omitempty"`
	// ReadLimit caps the reply size (default 2 KiB).
	ReadLimit int `yaml:"read_limit,omitempty" json:"read_limit,omitempty"`
}

type udpProber struct {
	*tcpProber // same exchange and judging; only the socket differs
	ucfg       UDPConfig
}

func newUDP(m Module, b *base) (*udpProber, error) {
	limit := m.UDP.ReadLimit
	if limit <= 0 {
		limit = 2 << 10
	}
	expect, err := compileExpect("udp.expect", m.UDP.Expect)
	if err != nil {
		return nil, err
	}
	conds, err := compileConditions(m.Conditions)
	if err != nil {
		return nil, err
	}
	t := &tcpProber{base: b, cfg: TCPConfig{Send: m.UDP.Send, ReadLimit: limit}, expect: expect, conds: conds, read: true}
	return &udpProber{tcpProber: t, ucfg: m.UDP}, nil
}

// Probe sends the payload to target ("host:port", optionally udp://...)
// and waits for one reply datagram. An ICMP port-unreachable comes back as
// a refused connection.
func (p *udpProber) Probe(ctx context.Context, target string) (r Result) {
	return p.run(ctx, KindUDP, target, func(ctx context.Context, rec *recorder, r *Result, start time.Time) {
		host, port, err := hostPort(target, "")
		if err != nil {
			r.fail(status.WithClass(status.ClassOther, err))
			return
		}
		c, err := p.dialer.dial(ctx, "udp", net.JoinHostPort(host, port), rec)
		if err != nil {
			r.fail(err)
			return
		}
		defer c.Close()
		r.Peer = c.RemoteAddr().String()
		reply, err := exchange(ctx, c, []byte(p.cfg.Send), true, p.expect, p.cfg.ReadLimit, p.m.ResponseTimeout, rec)
		r.Body = excerptOf(reply)
		if err != nil {
			r.fail(err)
			return
		}
		r.Connected = true
		r.Latency = time.Since(start)
		judgeReply(ctx, r, p.expect, reply, p.conds, p.clock.Now(), nil)
	})
}
