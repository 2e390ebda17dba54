package cluster

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/probe"
	pulsev1 "github.com/fb4b1dcc/pulse/proto/pulse/v1"
	"github.com/fb4b1dcc/pulse/status"
)

// maxConfirmProbes bounds the confirmation probes a node runs at once for
// its peers: a zone-wide outage seen by a peer must not turn into an
// unbounded burst of probes here.
const maxConfirmProbes = 64

// vantage is one peer asked to confirm, and what it said.
type vantage struct {
	m    Member
	resp *pulsev1.ConfirmResponse
	err  error
}

// confirm is the monitor's Confirm hook: before the owner declares a
// probed instance down, one node of each other zone (the first of the
// instance's rendezvous order there, so the choice is stable) probes it
// itself. Down needs at least Quorum of them to see it fail and none to
// see it answer; otherwise the instance stays suspect with their answers
// as the reason. With no node in another zone the other nodes of this
// zone are asked; alone, the owner judges alone.
func (n *Node) confirm(ctx context.Context, service, instance, _ string, p monitor.ProbeSpec) (bool, string) {
	asked := n.vantages(service, instance)
	if len(asked) == 0 {
		return true, "no other node to confirm with"
	}
	n.stats.confirmAsked.Add(1)
	deadline := p.Timeout + n.cfg.ConfirmTimeout
	cctx, cancel := context.WithTimeout(n.peerCtx(ctx), deadline)
	defer cancel()
	var wg sync.WaitGroup
	for i := range asked {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := &asked[i]
			client, err := n.peers.client(v.m)
			if err != nil {
				v.err = err
				return
			}
			v.resp, v.err = client.Confirm(cctx, &pulsev1.ConfirmRequest{Service: service, Instance: instance, Module: p.Name, FromNode: n.cfg.NodeID})
		}()
	}
	wg.Wait()
	failing, answering := 0, 0
	parts := make([]string, 0, len(asked))
	for _, v := range asked {
		where := "zone " + orDash(v.m.Zone) + " (" + v.m.ID + ")"
		switch {
		case v.err != nil:
			parts = append(parts, where+": no answer ("+shortErr(v.err)+")")
		case v.resp.GetStatus() == pulsev1.HealthStatus_HEALTH_STATUS_UNHEALTHY:
			failing++
			parts = append(parts, fmt.Sprintf("%s: %s: %s", where, orDash(v.resp.GetErrorClass()), v.resp.GetReason()))
		case v.resp.GetStatus() == pulsev1.HealthStatus_HEALTH_STATUS_HEALTHY || v.resp.GetStatus() == pulsev1.HealthStatus_HEALTH_STATUS_DEGRADED:
			// No latency in the reason: it would change every round and
			// make every round a transition (an event, a publication).
			answering++
			parts = append(parts, where+": "+strings.ToLower(status.Status(v.resp.GetStatus()).String()))
		default:
			parts = append(parts, where+": could not probe ("+v.resp.GetReason()+")")
		}
	}
	need := min(n.cfg.Quorum, len(asked))
	agree := answering == 0 && failing >= need
	reason := strings.Join(parts, "; ")
	if agree {
		n.stats.confirmAgreed.Add(1)
	} else {
		n.stats.confirmDisagreed.Add(1)
		n.log.Info("down not confirmed by other vantage points; the instance stays suspect", "service", service,
			"instance", instance, "module", p.Name, "failing", failing, "answering", answering, "needed", need, "reason", reason)
	}
	return agree, reason
}

// vantages picks the peers to ask: one per other zone, else the other
// nodes of this zone.
func (n *Node) vantages(service, instance string) []vantage {
	var other, same []vantage
	seen := map[string]bool{}
	for _, m := range n.ring.Load().Ranked(service, instance) {
		switch {
		case m.ID == n.cfg.NodeID:
		case m.Zone == n.cfg.Zone:
			same = append(same, vantage{m: m})
		case !seen[m.Zone]:
			seen[m.Zone] = true
			other = append(other, vantage{m: m})
		}
	}
	if len(other) > 0 {
		return other
	}
	return same
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "desc = "); i >= 0 {
		s = s[i+len("desc = "):]
	}
	return s
}

// probeFor answers a peer's Confirm: it probes the target this node's own
// configuration gives the instance, never an address from the request, so
// the RPC cannot be used to make nodes probe arbitrary hosts.
func (n *Node) probeFor(ctx context.Context, req *pulsev1.ConfirmRequest) *pulsev1.ConfirmResponse {
	resp := &pulsev1.ConfirmResponse{Node: n.cfg.NodeID, Zone: n.cfg.Zone}
	n.stats.confirmServed.Add(1)
	v, err := n.mon.Instance(req.GetService(), req.GetInstance())
	if err != nil || v.Target == "" {
		resp.Reason = "the instance has no probe target in this node's configuration"
		return resp
	}
	var ps *monitor.ProbeSpec
	if spec := n.mon.Spec(); spec != nil {
		for i := range spec.Services {
			if spec.Services[i].Name != req.GetService() {
				continue
			}
			for j := range spec.Services[i].Active {
				if spec.Services[i].Active[j].Name == req.GetModule() {
					ps = &spec.Services[i].Active[j]
				}
			}
		}
	}
	if ps == nil {
		resp.Reason = fmt.Sprintf("module %q is not configured for service %q on this node", req.GetModule(), req.GetService())
		return resp
	}
	select {
	case n.probers.sem <- struct{}{}:
		defer func() { <-n.probers.sem }()
	default:
		resp.Reason = "too many confirmations in flight on this node"
		return resp
	}
	mod := ps.Module
	mod.Interval, mod.Timeout = ps.Interval, ps.Timeout
	p, err := n.probers.get(req.GetService()+"\x00"+ps.Name, mod)
	if err != nil {
		resp.Reason = "cannot build the prober: " + err.Error()
		return resp
	}
	pctx, cancel := context.WithTimeout(ctx, ps.Timeout+ps.Timeout/10+50*time.Millisecond)
	defer cancel()
	r := p.Probe(pctx, v.Target)
	resp.Status = pulsev1.HealthStatus(r.Status)
	resp.ErrorClass = string(r.Class)
	resp.Reason = r.Reason
	if resp.Reason == "" && r.Err != nil {
		resp.Reason = r.Err.Error()
	}
	resp.LatencyNs = int64(r.Latency)
	return resp
}

// proberCache keeps one prober per service and module, with its pooled
// connections, for the probes this node runs for its peers.
type proberCache struct {
	newProber func(probe.Module) (probe.Prober, error)
	sem       chan struct{}

	mu      sync.Mutex
	m       map[string]*cachedProber
	retired []probe.Prober
	closed  bool
}

type cachedProber struct {
	mod probe.Module
	p   probe.Prober
}

func newProberCache(f func(probe.Module) (probe.Prober, error)) *proberCache {
	return &proberCache{newProber: f, sem: make(chan struct{}, maxConfirmProbes), m: map[string]*cachedProber{}}
}

func (c *proberCache) get(key string, mod probe.Module) (probe.Prober, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("node stopping")
	}
	if e := c.m[key]; e != nil {
		if reflect.DeepEqual(e.mod, mod) {
			return e.p, nil
		}
		// Another probe may still use it: close it with the rest.
		c.retired = append(c.retired, e.p)
	}
	p, err := c.newProber(mod)
	if err != nil {
		return nil, err
	}
	c.m[key] = &cachedProber{mod: mod, p: p}
	return p, nil
}

func (c *proberCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for k, e := range c.m {
		e.p.Close()
		delete(c.m, k)
	}
	for _, p := range c.retired {
		p.Close()
	}
	c.retired = nil
}
