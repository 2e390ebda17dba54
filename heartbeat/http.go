package heartbeat

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// httpTransport POSTs beats over one pooled http.Transport. A fixed set of
// worker goroutines does the sends, so a stuck send occupies one worker
// while the schedule and the other workers go on.
type httpTransport struct {
	s      *Sender
	url    string
	tr     *http.Transport
	client *http.Client
	jobs   chan *outBeat
	// cold admits one exchange at a time while no connection is known to
	// work, so overlapping beats do not each dial and handshake (only one
	// connection would be kept).
	cold chan struct{}
	warm sync.Mutex // guards hadConn
	// hadConn: a previous exchange succeeded, so the next one probably
	// reuses its connection and gets a shorter first attempt.
	hadConn bool
	gen     uint64 // connections opened so far; guarded by warm
}

func newHTTP(s *Sender) (*httpTransport, error) {
	u, err := url.Parse(s.cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("heartbeat: HTTP target: %w", err)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = wire.BeatPath
	}
	p := s.params.Load()
	// TCP keepalive from the interval: a half-open connection is found
	// within about two intervals even when no beat is in flight.
	dialer := &net.Dialer{
		Timeout: p.timeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: max(p.interval, time.Second),
			Interval: max(p.interval/3, time.Second), Count: 3,
		},
	}
	dial := dialer.DialContext
	if s.o.dial != nil {
		dial = s.o.dial
	}
	var tlsCfg *tls.Config
	if s.cfg.TLS != nil {
		tlsCfg = s.cfg.TLS.Clone()
	}
	t := &http.Transport{
		DialContext:       dial,
		TLSClientConfig:   tlsCfg,
		ForceAttemptHTTP2: true,
		MaxIdleConns:      s.cfg.MaxInFlight,
		// One connection carries the beats; a second covers an overlap
		// while a stuck one times out.
		MaxIdleConnsPerHost: s.cfg.MaxInFlight,
		// Idle longer than the interval, or every beat would pay a new
		// handshake (AP-05).
		IdleConnTimeout:       max(3*p.interval, 90*time.Second),
		TLSHandshakeTimeout:   p.timeout,
		ResponseHeaderTimeout: p.timeout,
		// HTTP/2 (TLS): PING a connection that has been silent for an
		// interval, and drop it if the PING is not answered in a timeout.
		HTTP2: &http.HTTP2Config{SendPingTimeout: max(p.interval, time.Second), PingTimeout: max(p.timeout, time.Second)},
	}
	return &httpTransport{
		s: s, url: u.String(), tr: t,
		client: &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		jobs:   make(chan *outBeat),
		cold:   make(chan struct{}, 1),
	}, nil
}

func (h *httpTransport) start(ctx context.Context, wg *sync.WaitGroup) error {
	for range h.s.cfg.MaxInFlight {
		wg.Add(1)
		go h.worker(ctx, wg)
	}
	return nil
}

func (h *httpTransport) acks() <-chan ackEvent   { return nil }
func (h *httpTransport) onAck(ackEvent)          {}
func (h *httpTransport) timer() <-chan time.Time { return nil }
func (h *httpTransport) onTimer()                {}
func (h *httpTransport) stop()                   { h.tr.CloseIdleConnections() }

func (h *httpTransport) send(b *outBeat) {
	select {
	case h.jobs <- b:
	default:
		h.s.finish(b, Result{Err: ErrBusy})
	}
}

func (h *httpTransport) worker(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-h.jobs:
			h.exchange(ctx, b)
		}
	}
}

// exchange sends one beat within its timeout. A failure on a reused
// connection is retried once at once on a fresh one (AP-07): a pooled
// connection may be half-open, and the first attempt on it gets only half
// the timeout so the retry still fits in one timeout.
func (h *httpTransport) exchange(ctx context.Context, b *outBeat) {
	defer func() {
		if p := recover(); p != nil {
			h.s.c.panics.Add(1)
			h.s.finish(b, Result{Err: status.Errorf(status.ClassInternal, "heartbeat: HTTP send panicked: %v", p)})
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	h.warm.Lock()
	warm, gen := h.hadConn, h.gen
	h.warm.Unlock()
	release := func() {}
	if !warm {
		if release = h.admitCold(ctx); release == nil {
			h.s.finish(b, Result{Err: status.WithClass(status.ClassTimeout, fmt.Errorf("heartbeat: waited out the timeout for a connection: %w", ctx.Err()))})
			return
		}
		defer release()
	}
	first := ctx
	if warm {
		var c2 context.CancelFunc
		first, c2 = context.WithTimeout(ctx, b.timeout/2)
		defer c2()
	}
	var used net.Conn
	res, reused := h.attempt(first, b, 0, release, &used)
	res.Attempts = 1
	if res.Err != nil && reused && ctx.Err() == nil {
		h.s.c.retries.Add(1)
		// The pooled connection did not answer: close it, so that the
		// retry cannot be handed the same one (HTTP/2 keeps a connection
		// whose stream was just cancelled in its pool; only the PING
		// timeout would retire it).
		if used != nil {
			used.Close()
		}
		// Cold from now on: beats that start meanwhile wait for the
		// connection this retry opens instead of each dialling one.
		h.warm.Lock()
		if h.gen == gen {
			h.hadConn = false
		}
		h.warm.Unlock()
		// The retry dials unless another send has already opened a fresh
		// connection since this one was found dead.
		retryRelease := h.admitCold(ctx)
		if retryRelease == nil {
			retryRelease = func() {}
		}
		h.warm.Lock()
		stale := h.gen == gen
		h.warm.Unlock()
		if stale {
			// Drop pooled connections: the one that failed may not be
			// the only half-open one.
			h.tr.CloseIdleConnections()
		}
		res, _ = h.attempt(ctx, b, 1, retryRelease, nil)
		retryRelease()
		res.Attempts = 2
	}
	h.warm.Lock()
	h.hadConn = res.Err == nil
	h.warm.Unlock()
	h.s.finish(b, res)
}

// admitCold waits for the right to open a connection; it returns the
// release func (idempotent), or nil if ctx ended first. It is released as
// soon as the exchange has a connection: only dialling and handshaking are
// serialised, so overlapping beats do not each open one (and the pool keep
// one), and a stuck exchange never holds up the others.
func (h *httpTransport) admitCold(ctx context.Context) func() {
	select {
	case h.cold <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-h.cold }) }
	case <-ctx.Done():
		return nil
	}
}

type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("heartbeat: monitor answered %d: %s", e.code, e.msg)
}

// attempt is one POST. It measures handshake and answer time apart, and
// stores the connection it used in *used (if used is not nil).
// A 4xx or 5xx answer reports reused=false: it is the monitor's answer,
// not a dead connection, and is not retried.
func (h *httpTransport) attempt(ctx context.Context, b *outBeat, n int, gotConn func(), used *net.Conn) (res Result, reused bool) {
	var (
		mu                  sync.Mutex
		connStart, tlsStart time.Time
		wrote, firstByte    time.Time
		connectDur, tlsDur  time.Duration
	)
	srtt, _, _, _ := h.s.rtt.get()
	body, _ := json.Marshal(wire.BeatJSON{
		Service: h.s.cfg.Service, Instance: h.s.cfg.Instance, Epoch: h.s.epoch, Seq: b.seq,
		SentAtNS: int64(h.s.sentAt(b.first)), Status: b.status, Reason: b.reason,
		IntervalMS: wire.DurMS(b.interval), RTTMicros: uint32(min(srtt.Microseconds(), 1<<32-1)), Attempt: uint8(n),
	})
	// An exchange that started warm can still dial (the transport redials
	// by itself when it finds the pooled connection gone): it then takes
	// the cold gate too, so beats starting meanwhile wait for its
	// connection instead of each opening one.
	var (
		dialGate func()
		finished bool // the transport may still dial for its pool after we return
	)
	defer func() {
		mu.Lock()
		g := dialGate
		finished = true
		mu.Unlock()
		if g != nil {
			g()
		}
	}()
	trace := &httptrace.ClientTrace{
		ConnectStart: func(string, string) {
			h.warm.Lock()
			h.hadConn = false
			h.warm.Unlock()
			mu.Lock()
			defer mu.Unlock()
			connStart = time.Now()
			if finished || dialGate != nil {
				return
			}
			select {
			case h.cold <- struct{}{}:
				var once sync.Once
				dialGate = func() { once.Do(func() { <-h.cold }) }
			default: // the gate is ours already, or another dial holds it
			}
		},
		ConnectDone:       func(string, string, error) { mu.Lock(); connectDur = time.Since(connStart); mu.Unlock() },
		TLSHandshakeStart: func() { mu.Lock(); tlsStart = time.Now(); mu.Unlock() },
		TLSHandshakeDone: func(_ tls.ConnectionState, err error) {
			mu.Lock()
			tlsDur = time.Since(tlsStart)
			mu.Unlock()
			if err == nil {
				h.s.c.tls.Add(1)
			}
		},
		GotConn: func(info httptrace.GotConnInfo) {
			if info.Reused {
				gotConn()
			}
			mu.Lock()
			reused = info.Reused
			if used != nil {
				*used = info.Conn
			}
			mu.Unlock()
			if !info.Reused {
				h.s.c.conns.Add(1)
				h.warm.Lock()
				h.gen++
				h.warm.Unlock()
			}
		},
		// A new HTTP/2 connection joins the pool asynchronously after its
		// handshake; once a request is written on it, it is there, so the
		// beats waiting to open a connection find it instead of each
		// dialling (and handshaking) one that HTTP/2 then throws away. Not
		// later: a monitor slow to answer must not hold other beats.
		WroteRequest: func(httptrace.WroteRequestInfo) {
			gotConn()
			mu.Lock()
			g := dialGate
			wrote = time.Now()
			mu.Unlock()
			if g != nil {
				g()
			}
		},
		GotFirstResponseByte: func() { mu.Lock(); firstByte = time.Now(); mu.Unlock() },
	}
	rctx := httptrace.WithClientTrace(ctx, trace)
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return Result{Err: status.WithClass(status.ClassInternal, err)}, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+h.s.cfg.Token)
	if b.trace.IsValid() {
		req.Header.Set("traceparent", b.trace.String())
	}
	resp, err := h.client.Do(req)
	mu.Lock()
	res.Handshake = connectDur + tlsDur
	reusedOut := reused
	answered := !wrote.IsZero() && !firstByte.IsZero()
	if answered {
		res.RTT = firstByte.Sub(wrote)
	}
	res.Reused = reusedOut
	mu.Unlock()
	if res.Handshake > 0 {
		h.s.c.handshakeNS.Add(uint64(res.Handshake))
	}
	if err != nil {
		return Result{Err: status.WithClass(status.Classify(err), fmt.Errorf("heartbeat: POST %s: %w", h.url, err)), Handshake: res.Handshake, Reused: reusedOut}, reusedOut
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return Result{Err: status.WithClass(status.Classify(err), fmt.Errorf("heartbeat: read answer: %w", err)), Reused: reusedOut}, reusedOut
	}
	if resp.StatusCode != http.StatusOK {
		var e wire.ErrorJSON
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Reason + ": " + e.Error
		}
		class := status.ClassProtocol
		if resp.StatusCode >= 500 {
			class = status.ClassRefused
		}
		return Result{Err: status.WithClass(class, &statusError{code: resp.StatusCode, msg: msg}), Reused: reusedOut}, false
	}
	var a wire.AckJSON
	if err := json.Unmarshal(raw, &a); err != nil || a.Seq != b.seq || a.Epoch != h.s.epoch {
		return Result{Err: status.Errorf(status.ClassProtocol, "heartbeat: monitor's answer does not acknowledge seq %d: %s", b.seq, raw), Reused: reusedOut}, false
	}
	if res.RTT > 0 {
		h.s.rtt.sample(res.RTT)
	}
	h.s.applyDirective(wire.Directive{
		Interval: time.Duration(a.IntervalMS) * time.Millisecond,
		Jitter:   time.Duration(a.JitterMS) * time.Millisecond,
		Timeout:  time.Duration(a.TimeoutMS) * time.Millisecond,
	})
	res.Acked = true
	if a.Code == "duplicate" {
		res.Code = wire.AckDuplicate
	}
	return res, reusedOut
}
