package monitor

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/fb4b1dcc/pulse/probe"
	"github.com/fb4b1dcc/pulse/status"
)

// isolation records whether the monitor's own connectivity check fails:
// then the fault is presumed to be the monitor's and no down verdicts are
// issued at all.
type isolation struct {
	active bool
	reason string
	since  time.Duration
}

// anchorSet is the monitor's connectivity check: targets that should
// always answer (its gateway, peers, a stable service).
type anchorSet struct {
	targets  []string
	interval time.Duration
}

func newAnchorSet(targets []string, interval time.Duration) *anchorSet {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	return &anchorSet{targets: targets, interval: interval}
}

// anchorModule picks a prober for an anchor: http(s) URLs get an HTTP
// probe (any answer counts), everything else a TCP connect.
func anchorModule(target string, timeout time.Duration) (probe.Module, string) {
	if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
		m := probe.Module{Kind: probe.KindHTTP, Timeout: timeout}
		m.Conditions.Healthy = []string{"status > 0"}
		return m, target
	}
	return probe.Module{Kind: probe.KindTCP, Timeout: timeout}, strings.TrimPrefix(target, "tcp://")
}

// anchorLoop checks the anchors every interval. Isolation needs a
// majority of anchors failing, so one dead anchor does not silence the
// monitor.
func (m *Monitor) anchorLoop(ctx context.Context) {
	t := m.clk.NewTimer(0)
	defer t.Stop()
	probers := map[string]probe.Prober{}
	defer func() {
		for _, p := range probers {
			p.Close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		m.mu.Lock()
		set := m.anchors
		m.mu.Unlock()
		if set == nil || len(set.targets) == 0 {
			m.setIsolation(false, "")
			t.Reset(5 * time.Second)
			continue
		}
		timeout := min(set.interval/2, 2*time.Second)
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			failed []string
		)
		for _, target := range set.targets {
			mod, addr := anchorModule(target, timeout)
			p := probers[target]
			if p == nil {
				var err error
				if p, err = m.opts.NewProber(mod); err != nil {
					m.log.Error("anchor cannot be probed", "anchor", target, "err", err)
					continue
				}
				probers[target] = p
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				pctx, cancel := context.WithTimeout(ctx, timeout+time.Second)
				defer cancel()
				r := p.Probe(pctx, addr)
				if r.Status != status.Healthy && ctx.Err() == nil {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("%s (%s)", target, r.Class))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		isolated := 2*len(failed) > len(set.targets)
		m.setIsolation(isolated, fmt.Sprintf("%d of %d anchors unreachable: %s", len(failed), len(set.targets), strings.Join(failed, ", ")))
		t.Reset(set.interval)
	}
}

func (m *Monitor) setIsolation(on bool, reason string) {
	m.mu.Lock()
	defer m.unlock()
	if m.isolation.active == on {
		if on {
			m.isolation.reason = reason
		}
		return
	}
	now := m.now()
	m.isolation = isolation{active: on, reason: reason, since: now}
	if on {
		m.later(func() {
			m.log.Error("the monitor's own connectivity check fails: no down verdicts until it recovers", "reason", reason)
		})
		m.emitLocked(Event{Source: "protection", To: "isolated", Reason: "monitor isolated: " + reason}, now)
	} else {
		m.later(func() { m.log.Info("the monitor's connectivity check recovered") })
		m.emitLocked(Event{Source: "protection", To: "connected", Reason: "monitor connectivity recovered"}, now)
	}
	m.hooks.Protection("", "", on, reason)
}

// Isolated reports whether the monitor presumes itself cut off.
func (m *Monitor) Isolated() (bool, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.isolation.active, m.isolation.reason
}
