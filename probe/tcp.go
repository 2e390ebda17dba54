package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/fb4b1dcc/pulse/condition"
	"github.com/fb4b1dcc/pulse/status"
)

// TCPConfig is the tcp prober's part of a module: connect, optionally send
// a line and expect a reply.
type TCPConfig struct {
	// Send is written after connecting (e.g. "PING\r\n").
	Send string `yaml:"send,omitempty" json:"send,omitempty"`
	// Expect is a regular expression the reply must match; reading stops
	// at the first match, at ReadLimit bytes, at EOF or at the response
	// deadline. Without it the first chunk read is the reply.
	Expect string `yaml:"expect,omitempty" json:"expect,omitempty"`
	// ReadLimit caps the reply read (default 4 KiB).
	ReadLimit int `yaml:"read_limit,omitempty" json:"read_limit,omitempty"`
}

type tcpProber struct {
	*base
	cfg    TCPConfig
	expect *regexp.Regexp
	conds  *condition.Set
	read   bool // read a reply: Expect set or a condition reads the body
}

func newTCP(m Module, b *base) (*tcpProber, error) {
	p := &tcpProber{base: b, cfg: m.TCP}
	if p.cfg.ReadLimit <= 0 {
		p.cfg.ReadLimit = 4 << 10
	}
	var err error
	if p.expect, err = compileExpect("tcp.expect", m.TCP.Expect); err != nil {
		return nil, err
	}
	if p.conds, err = compileConditions(m.Conditions); err != nil {
		return nil, err
	}
	p.read = p.expect != nil || p.conds.UsesBody()
	return p, nil
}

func compileExpect(field, pattern string) (*regexp.Regexp, error) {
	if pattern == "" {
		return nil, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("probe: %s: %w", field, err)
	}
	return re, nil
}

// Probe connects to target ("host:port", optionally tcp://host:port).
func (p *tcpProber) Probe(ctx context.Context, target string) (r Result) {
	return p.run(ctx, KindTCP, target, func(ctx context.Context, rec *recorder, r *Result, start time.Time) {
		host, port, err := hostPort(target, "")
		if err != nil {
			r.fail(status.WithClass(status.ClassOther, err))
			return
		}
		c, err := p.dialer.dial(ctx, "tcp", net.JoinHostPort(host, port), rec)
		if err != nil {
			r.fail(err)
			return
		}
		defer c.Close()
		r.Connected, r.Peer = true, c.RemoteAddr().String()
		reply, err := exchange(ctx, c, []byte(p.cfg.Send), p.read, p.expect, p.cfg.ReadLimit, p.m.ResponseTimeout, rec)
		r.Body = excerptOf(reply)
		if err != nil {
			r.fail(err)
			return
		}
		r.Latency = time.Since(start)
		judgeReply(ctx, r, p.expect, reply, p.conds, p.clock.Now(), nil)
	})
}

// exchange writes send (if any) and, when read is set, reads until expect
// matches, limit bytes, EOF or the response deadline.
func exchange(ctx context.Context, c net.Conn, send []byte, read bool, expect *regexp.Regexp,
	limit int, respTO time.Duration, rec *recorder) ([]byte, error) {
	dl, _ := ctx.Deadline()
	if rd := time.Now().Add(respTO); dl.IsZero() || rd.Before(dl) {
		dl = rd
	}
	// Deadlines on the socket are what bound the I/O; the context also
	// interrupts it (prober closing, caller cancelling).
	c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if len(send) > 0 {
		if _, err := c.Write(send); err != nil {
			return nil, ioError(ctx, "sending", err)
		}
	}
	rec.mark(&rec.wrote)
	if !read {
		return nil, nil
	}
	buf := make([]byte, 0, min(limit, 512))
	tmp := make([]byte, min(limit, 2048))
	for len(buf) < limit {
		n, err := c.Read(tmp[:min(len(tmp), limit-len(buf))])
		if n > 0 {
			if len(buf) == 0 {
				rec.mark(&rec.firstByte)
			}
			buf = append(buf, tmp[:n]...)
			if expect == nil || expect.Match(buf) {
				break // without a pattern the first chunk is the reply
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			if len(buf) > 0 {
				break // something arrived: it is the reply, matching or not
			}
			rec.mark(&rec.end)
			return buf, ioError(ctx, "waiting for the reply", err)
		}
		if len(buf) > 0 && isDatagram(c) {
			break // one datagram is the whole reply, matching or not
		}
	}
	rec.mark(&rec.end)
	return buf, nil
}

func isDatagram(c net.Conn) bool {
	_, ok := c.(*net.UDPConn)
	if tc, isT := c.(*trackedConn); isT {
		_, ok = tc.Conn.(*net.UDPConn)
	}
	return ok
}

func ioError(ctx context.Context, what string, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return status.Errorf(status.ClassTimeout, "timeout %s: %w", what, context.DeadlineExceeded)
	}
	if ctx.Err() != nil {
		return status.Errorf(status.ClassOther, "%s: %w", what, ctx.Err())
	}
	cls := status.Classify(err)
	return status.WithClass(cls, fmt.Errorf("%s: %w", what, err))
}

// judgeReply applies the expect pattern and the conditions to a reply.
func judgeReply(ctx context.Context, r *Result, expect *regexp.Regexp, reply []byte, conds *condition.Set,
	now time.Time, info *condition.TLS) {
	if expect != nil && !expect.Match(reply) {
		r.fail(status.Errorf(status.ClassCondition, "reply does not match /%s/: got %s", expect, quoteShort(reply)))
		return
	}
	v := conds.Eval(context.WithoutCancel(ctx), &condition.Input{Body: reply, Latency: r.Latency, TLS: info, Now: now})
	r.Status = status.Healthy
	r.Reason = "connected"
	if len(reply) > 0 {
		r.Reason = "reply " + quoteShort(reply)
	}
	r.judge(v)
}

func quoteShort(b []byte) string {
	if len(b) > 64 {
		return strconv.Quote(string(b[:64])) + "…"
	}
	return strconv.Quote(string(b))
}

// Close cancels probes in flight.
func (p *tcpProber) Close() error {
	p.close()
	return nil
}
