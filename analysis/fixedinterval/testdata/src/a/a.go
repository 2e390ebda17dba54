package a

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"time"
)

func send(ctx context.Context) error { return ctx.Err() }

// startHeartbeat: the seed's hard-coded 30 s interval (INC-2021-277).
func startHeartbeat(ctx context.Context) {
	t := time.NewTicker(30 * time.Second) // want `startHeartbeat beats on a hard-coded 30s interval \(time.NewTicker\) with no jitter`
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			bctx, cancel := context.WithTimeout(ctx, 3*time.Second) // want `startHeartbeat uses a hard-coded 3s timeout \(context.WithTimeout\)`
			_ = send(bctx)
			cancel()
		}
	}
}

const heartbeatTimeout = 3 * time.Second

// checkHealth: the seed's INC-2023-0891 fixed 3 s timeout, through a named constant.
func checkHealth(addr string) error {
	d := net.Dialer{Timeout: heartbeatTimeout} // want `checkHealth uses a hard-coded 3s timeout \(net.Dialer.Timeout\)`
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

type HealthChecker struct{ client *http.Client }

// run is health-like through its receiver type; the timer re-armed with a
// constant is its schedule (nacos-sdk-go's healthCheck has this shape).
func (h *HealthChecker) run(ctx context.Context) {
	t := time.NewTimer(time.Second) // want `run uses a hard-coded 1s timeout \(time.NewTimer\)`
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			t.Reset(10 * time.Second) // want `run beats on a hard-coded 10s interval \(Timer.Reset\)`
		}
	}
}

// reconnectKeepAlive waits a constant delay before retrying: a retry wait,
// not the beat schedule (etcd's lease loop has this shape).
func reconnectKeepAlive(ctx context.Context, dial func() error) error {
	for dial() != nil {
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

func probeClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second} // want `probeClient uses a hard-coded 5s timeout \(http.Client.Timeout\)`
}

// --- must not be flagged ---

type Config struct {
	Interval time.Duration
	Timeout  time.Duration
}

// heartbeatLoop takes both from configuration.
func heartbeatLoop(ctx context.Context, cfg Config) {
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			bctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
			_ = send(bctx)
			cancel()
		}
	}
}

// beatJittered uses a constant base with random jitter: no lockstep.
func beatJittered(ctx context.Context) {
	for ctx.Err() == nil {
		time.Sleep(30*time.Second + rand.N(5*time.Second))
	}
}

// pulse's sender idiom: a configured interval and a jitter helper.
func heartbeatWithJitter(ctx context.Context, base time.Duration, jitter func(time.Duration) time.Duration) {
	t := time.NewTimer(jitter(base))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			t.Reset(jitter(base))
		}
	}
}

// healthCheckLoop creates a placeholder timer and arms it with the
// configured interval (go-redis's pub/sub health check has this shape).
func healthCheckLoop(ctx context.Context, every time.Duration, ping func()) {
	timer := time.NewTimer(time.Minute)
	timer.Stop()
	for {
		timer.Reset(every)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			ping()
		}
	}
}

// fetchOrders is not a health function.
func fetchOrders(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_ = ctx
}

func pingIgnored(ctx context.Context) {
	//pulselint:ignore fixedinterval the protocol fixes the keepalive at 15s (RFC-like spec)
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	<-t.C
}
