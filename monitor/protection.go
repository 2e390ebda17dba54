package monitor

import (
	"fmt"
	"slices"
	"time"
)

// transitionLocked moves an instance to a new state, keeping the group
// counts, and emits the event (log, store, watchers, hooks).
func (m *Monitor) transitionLocked(in *instance, to State, source, reason string, now time.Duration) {
	from := in.state
	if from == to && in.reason == reason {
		return
	}
	s := in.svc
	in.zone.counts[from]--
	in.zone.counts[to]++
	s.all.counts[from]--
	s.all.counts[to]++
	if from == Down {
		s.downs--
	}
	if to == Down {
		s.downs++
		in.zone.recentDowns = append(in.zone.recentDowns, now)
		s.all.recentDowns = append(s.all.recentDowns, now)
	}
	if to != Down {
		in.okStreak = 0
	}
	if from != to {
		in.since = now // a new reason alone does not restart the state's clock
	}
	in.state, in.reason, in.source = to, reason, source
	in.dirty = true
	s.hooks.Transition(from, to, reasonClass(source, reason))
	ev := Event{Service: s.name, Instance: in.name, Zone: in.zone.name, From: from.String(), To: to.String(), Reason: reason, Source: source}
	if in.traceID != ([16]byte{}) {
		ev.TraceID = hexTrace(in.traceID)
	}
	ref := evidenceRef{traceID: in.traceID, spanID: in.spanID}
	if in.peer.IsValid() {
		ref.peer = in.peer.String()
	}
	for i := range in.active {
		if a := &in.active[i]; a.last != nil && a.lastAt >= in.lastBeat {
			ref.latency, ref.class = a.last.Latency, string(a.last.Class)
			if ref.peer == "" {
				ref.peer = a.last.Peer
			}
		}
	}
	m.emitWithEvidence(ev, now, ref)
	if from != to {
		// The group's share of suspects changed: protection may flip now,
		// not at the next tick.
		m.checkGroupLocked(s, in.zone, now)
		m.checkGroupLocked(s, &s.all, now)
	}
}

// reasonClass is a low-cardinality label for a transition's reason.
func reasonClass(source, reason string) string {
	switch {
	case source == "protection":
		return "protection"
	case source == "config" || source == "api":
		return source
	case len(reason) >= 8 && reason[:8] == "flapping":
		return "flapping"
	case len(reason) >= 8 && reason[:8] == "degraded":
		return "degraded"
	case len(reason) >= 6 && reason[:6] == "probe ":
		return "probe_failed"
	case len(reason) >= 3 && reason[:3] == "no ":
		return "silence"
	}
	return "other"
}

func hexTrace(id [16]byte) string {
	const digits = "0123456789abcdef"
	var b [32]byte
	for i, c := range id {
		b[2*i], b[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(b[:])
}

// suspectShare is the share of a group's instances that are failing now
// or were confirmed down recently: the signal of a correlated failure.
func (g *group) suspectShare(now, window time.Duration) float64 {
	if g.total == 0 {
		return 0
	}
	i := 0
	for i < len(g.recentDowns) && now-g.recentDowns[i] > window {
		i++
	}
	g.recentDowns = g.recentDowns[i:]
	recent := min(len(g.recentDowns), g.counts[Down])
	n := g.counts[Suspect] + g.counts[Protected] + recent
	return float64(n) / float64(g.total)
}

// protectionWindow is how long a down verdict keeps counting towards its
// group's share: long enough that instances confirmed early in a
// correlated failure still count when the rest turn suspect.
func protectionWindow(s *service) time.Duration {
	return max(30*time.Second, 10*s.cfg.spec.Verdict.DownAfter)
}

// checkGroupLocked turns protection on when the group's suspect share
// crosses the threshold, and off once it has stayed below half of it for a
// down_after period (hysteresis, so a flapping share does not flap
// protection).
func (m *Monitor) checkGroupLocked(s *service, g *group, now time.Duration) {
	p := &s.cfg.spec.Protection
	if p.Disabled {
		if g.protected {
			m.setProtectionLocked(s, g, false, "protection disabled", now)
		}
		return
	}
	share := g.suspectShare(now, protectionWindow(s))
	switch {
	case !g.protected && g.total >= p.MinGroup && share >= p.SuspectShare:
		what := "service " + s.name
		if g != &s.all {
			what = "zone " + g.name
			if g.name == "" {
				what = "zone (none)"
			}
		}
		g.reason = fmt.Sprintf("%.0f%% of %s suspect at once (threshold %.0f%%): presuming a network or monitor fault, evictions paused", share*100, what, p.SuspectShare*100)
		g.lowSince = 0
		m.setProtectionLocked(s, g, true, g.reason, now)
	case g.protected && share < p.SuspectShare/2:
		if g.lowSince == 0 {
			g.lowSince = now
		}
		if now-g.lowSince >= s.cfg.spec.Verdict.DownAfter {
			m.setProtectionLocked(s, g, false, fmt.Sprintf("suspect share back to %.0f%%", share*100), now)
		}
	case g.protected:
		g.lowSince = 0
	}
}

// checkProtectionLocked re-evaluates the service's groups (from the judge
// tick: shares also fall as recent downs age out).
func (m *Monitor) checkProtectionLocked(s *service, now time.Duration) {
	if s.cfg == nil {
		return
	}
	m.checkGroupLocked(s, &s.all, now)
	for _, g := range s.zones {
		m.checkGroupLocked(s, g, now)
	}
}

func (m *Monitor) setProtectionLocked(s *service, g *group, on bool, reason string, now time.Duration) {
	g.protected = on
	g.since = now
	to := "protection_off"
	if on {
		to = "protection_on"
	} else {
		// Downs in the group resume slowly: the first waits the base
		// back-off.
		g.startPacing(&s.cfg.spec.Protection, now)
	}
	zone := g.name
	if g == &s.all {
		zone = WholeService
	}
	m.hooks.Protection(s.name, zone, on, reason)
	m.emitLocked(Event{Service: s.name, Zone: g.name, Source: "protection", To: to, Reason: reason}, now)
	if on {
		m.later(func() { m.log.Warn("protection on", "service", s.name, "zone", g.name, "reason", reason) })
	} else {
		m.later(func() { m.log.Info("protection off", "service", s.name, "zone", g.name, "reason", reason) })
		// Re-judge the protected instances of this group now.
		for _, in := range s.byName {
			if in.state == Protected && (g == &s.all || in.zone == g) {
				m.wheel.schedule(in, now)
			}
		}
		m.kick()
	}
}

// protectingGroup returns the group whose protection covers in, if any.
func (m *Monitor) protectingGroup(in *instance) *group {
	if in.zone.protected {
		return in.zone
	}
	if in.svc.all.protected {
		return &in.svc.all
	}
	return nil
}

// overwhelmingLocked applies the rule that still removes an instance that
// is really gone inside a protected group: its failure is definitive (its
// port refuses connections: the host is up and the process is not), or its
// silence exceeds Overwhelm times the typical silence of the group's other
// failing instances (and Overwhelm probe or beat intervals), so it is not
// one of the slow crowd.
func (m *Monitor) overwhelmingLocked(in *instance, g *group, ev evidence, now time.Duration) bool {
	if ev.definitive {
		return true
	}
	s := in.svc
	p := &s.cfg.spec.Protection
	typical := m.typicalSilenceLocked(s, g, now)
	floor := time.Duration(p.Overwhelm * float64(s.nominalInterval()))
	return ev.silence > floor && float64(ev.silence) > p.Overwhelm*float64(typical)
}

// nominalInterval is the service's beat interval, or its shortest probe
// interval when it has no beats.
func (s *service) nominalInterval() time.Duration {
	spec := &s.cfg.spec
	if spec.Passive.Enabled {
		return spec.Passive.Interval
	}
	iv := time.Duration(0)
	for _, a := range spec.Active {
		if iv == 0 || a.Interval < iv {
			iv = a.Interval
		}
	}
	if iv == 0 {
		iv = time.Second
	}
	return iv
}

// typicalSilenceLocked is the median silence of the group's failing
// instances, cached for a second (it walks the service).
func (m *Monitor) typicalSilenceLocked(s *service, g *group, now time.Duration) time.Duration {
	if g.typical > 0 && now-g.typicalAt < time.Second {
		return g.typical
	}
	var sil []time.Duration
	for _, o := range s.byName {
		if (o.state == Suspect || o.state == Protected) && (g == &s.all || o.zone == g) {
			sil = append(sil, m.gather(o, now).silence)
		}
	}
	typ := s.nominalInterval()
	if len(sil) > 0 {
		slices.Sort(sil)
		typ = max(sil[len(sil)/2], typ)
	}
	g.typical, g.typicalAt = typ, now
	return typ
}
