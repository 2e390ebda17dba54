package monitor

import (
	"context"
	"fmt"
	"time"

	"github.com/fb4b1dcc/pulse/detector"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/store"
)

// ClusterHooks connect a monitor to its peers in cluster mode. Every
// instance is judged by exactly one node, its owner; the others mirror its
// state. A nil field means the single-node behaviour.
type ClusterHooks struct {
	// Owns reports whether this node judges the instance. It is called on
	// the beat path and under the monitor's lock: it must be fast, safe for
	// concurrent use, and must not call back into the monitor.
	Owns func(service, instance string) bool
	// Forward receives beats of instances another node owns. The slice is
	// the hook's to keep. It is called outside the monitor's lock.
	Forward func(obs []ingest.Observation)
	// Confirm asks vantage points in other zones whether an instance with a
	// probe target really fails, before this node declares it down. It runs
	// on a goroutine the monitor owns, with a deadline in ctx; agree means
	// the others see it fail too, reason says what they saw.
	Confirm func(ctx context.Context, service, instance, target string, p ProbeSpec) (agree bool, reason string)
}

// confirmation is the state of a multi-vantage check of one instance.
type confirmation struct {
	inFlight bool
	at       time.Duration // when the last answer came (0: none yet)
	agree    bool
	reason   string
}

// owns reports whether this node judges in (always true alone).
func (m *Monitor) owns(service, instance string) bool {
	c := m.opts.Cluster
	return c == nil || c.Owns == nil || c.Owns(service, instance)
}

// forwardForeign hands beats of instances owned elsewhere to the Forward
// hook and returns the rest, before the lock is taken.
func (m *Monitor) forwardForeign(obs []ingest.Observation) []ingest.Observation {
	c := m.opts.Cluster
	if c == nil || c.Owns == nil {
		return obs
	}
	var foreign []ingest.Observation
	mine := obs[:0:0]
	split := false
	for i := range obs {
		if c.Owns(obs[i].Service, obs[i].Instance) {
			if split {
				mine = append(mine, obs[i])
			}
			continue
		}
		if !split {
			split = true
			mine = append(mine, obs[:i]...)
		}
		foreign = append(foreign, obs[i])
	}
	if !split {
		return obs
	}
	if len(foreign) > 0 && c.Forward != nil {
		c.Forward(foreign)
	}
	return mine
}

// Reown re-reads ownership after a membership change. Instances this node
// now owns are taken over in grace: their detectors are seeded as if a
// beat had just arrived (with the estimates mirrored from the previous
// owner), so a takeover causes no down storm. Instances it no longer owns
// stop being judged and probed here. It returns the instances taken over,
// so the caller can publish their state under its own name.
func (m *Monitor) Reown() (gained []store.Key) {
	m.mu.Lock()
	defer m.unlock()
	now := m.now()
	for _, s := range m.order {
		for _, in := range s.byName {
			o := m.owns(s.name, in.name)
			switch {
			case o && !in.foreign:
				continue
			case o:
				gained = append(gained, store.Key{Service: s.name, Instance: in.name})
				in.foreign = false
				in.registered = now // the start-up grace applies to a takeover
				if s.cfg.spec.Passive.Enabled && in.beats > 0 {
					in.passive.Seed(s.cfg.passive, in.passive.Estimate(), now)
					if in.alt != nil {
						in.alt.Observe(now, in.rtt)
					}
				}
				for i := range in.active {
					a := &in.active[i]
					if a.succeeded {
						a.det.Seed(s.cfg.active[i], a.det.Estimate(), now)
					}
					a.fails = 0
				}
				m.wheel.schedule(in, now)
			default:
				in.foreign = true
				in.confirm = nil
				m.wheel.unlink(in)
			}
		}
	}
	m.sched.poke()
	return gained
}

// Snapshots returns the current state of the given instances, with the
// detector estimates a takeover seeds from (unknown keys are skipped), or
// of every instance this node owns when keys is nil. In cluster mode it is
// what a node publishes for its peers.
func (m *Monitor) Snapshots(keys []store.Key) []store.Instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	if keys == nil {
		var out []store.Instance
		for _, s := range m.order {
			for _, in := range s.byName {
				if !in.foreign {
					out = append(out, m.snapshotLocked(in))
				}
			}
		}
		return out
	}
	out := make([]store.Instance, 0, len(keys))
	for _, k := range keys {
		if s := m.services[k.Service]; s != nil {
			if in := s.byName[k.Instance]; in != nil {
				out = append(out, m.snapshotLocked(in))
			}
		}
	}
	return out
}

// Mirror applies states published by the owners of instances this node
// does not own, so its API serves the whole fleet. Transitions become
// events here too (source "peer"), so every node's watch stream and history
// show the fleet. States of instances this node owns are ignored: it is
// their authority.
func (m *Monitor) Mirror(states []store.Instance) {
	m.mu.Lock()
	defer m.unlock()
	now := m.now()
	for _, si := range states {
		s := m.services[si.Service]
		if s == nil || s.removed || m.owns(si.Service, si.Instance) {
			continue
		}
		st, err := ParseState(si.State)
		if err != nil {
			continue
		}
		in := s.byName[si.Instance]
		if st == Left {
			if in != nil && in.static == nil {
				m.transitionLocked(in, Left, "peer", si.Reason, now)
				m.deleteInstanceLocked(in)
			}
			continue
		}
		if in == nil {
			if !s.cfg.spec.RegisterByBeats {
				continue
			}
			in = m.newInstanceLocked(s, si.Instance, si.Zone, now)
			in.foreign = true
		}
		if !si.LastBeat.IsZero() && s.cfg.spec.Passive.Enabled {
			// Keep the estimate, so a takeover starts from it.
			in.passive.Seed(s.cfg.passive, detector.Estimate{Interval: si.MeanInterval, Deviation: si.DevInterval, RTT: si.RTT}, now)
			in.beats = max(in.beats, 1)
			in.lastBeat = m.mono(si.LastBeat)
		}
		if in.state != st || in.reason != si.Reason {
			m.transitionLocked(in, st, "peer", si.Reason, now)
		}
	}
}

// confirmLockedCluster runs the multi-vantage check before a down verdict.
// It returns ok=true when the down may proceed, otherwise the instant to
// look again (the instance stays suspect, with the reason).
func (m *Monitor) confirmDownLocked(in *instance, now time.Duration) (proceed bool, next time.Duration) {
	c := m.opts.Cluster
	if c == nil || c.Confirm == nil || in.static == nil || in.static.target == "" || len(in.active) == 0 {
		return true, 0
	}
	iv := in.svc.nominalInterval()
	cf := in.confirm
	if cf == nil {
		cf = &confirmation{}
		in.confirm = cf
	}
	fresh := cf.at > 0 && now-cf.at < 2*iv+time.Second
	if fresh && cf.agree {
		return true, 0
	}
	if fresh {
		reason := "unconfirmed from other zones: " + cf.reason
		if in.state != Suspect || in.reason != reason {
			m.transitionLocked(in, Suspect, "cluster", reason, now)
		}
	}
	if !cf.inFlight && !fresh {
		cf.inFlight = true
		m.startConfirm(in, in.svc.cfg.spec.Active[0])
	}
	return false, now + max(iv/2, 250*time.Millisecond)
}

// startConfirm asks the peers on a goroutine Run owns.
func (m *Monitor) startConfirm(in *instance, p ProbeSpec) {
	ctx := m.runCtx
	if ctx == nil {
		ctx = context.Background()
	}
	service, name, target := in.svc.name, in.name, in.static.target
	m.confirmWG.Add(1)
	go func() {
		defer m.confirmWG.Done()
		var (
			agree  bool
			reason string
		)
		func() {
			defer func() {
				if r := recover(); r != nil {
					agree, reason = false, fmt.Sprintf("confirmation failed: %v", r)
				}
			}()
			cctx, cancel := context.WithTimeout(ctx, p.Timeout+5*time.Second)
			defer cancel()
			agree, reason = m.opts.Cluster.Confirm(cctx, service, name, target, p)
		}()
		m.mu.Lock()
		defer m.unlock()
		now := m.now()
		if cf := in.confirm; cf != nil && !in.gone {
			cf.inFlight, cf.at, cf.agree, cf.reason = false, now, agree, reason
			if !in.foreign {
				m.judgeLocked(in, now)
			}
		}
	}()
}
