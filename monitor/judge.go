package monitor

import (
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/probe"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// observeBeatLocked feeds one passive beat to its instance's detector.
func (m *Monitor) observeBeatLocked(o *ingest.Observation) {
	s := m.services[o.Service]
	if s == nil || s.removed || !s.cfg.spec.Passive.Enabled {
		m.dropped++
		return
	}
	in := s.byName[o.Instance]
	now := m.mono(o.ReceivedAt)
	if in == nil {
		if !s.cfg.spec.RegisterByBeats {
			m.dropped++
			return
		}
		in = m.newInstanceLocked(s, o.Instance, "", now)
	}
	var gap time.Duration
	if in.lastBeat > 0 {
		gap = now - in.lastBeat
	}
	restart := in.beats > 0 && o.Epoch != in.epoch
	delay := m.beatDelay(in, o, now, restart)
	if restart {
		in.passive.Restart(s.cfg.passive, now, delay)
	} else {
		in.passive.Observe(s.cfg.passive, now, delay)
	}
	if in.alt != nil {
		if restart {
			in.alt.Restart(now, delay)
		} else {
			in.alt.Observe(now, delay)
		}
	}
	in.epoch = o.Epoch
	in.beats++
	in.lastBeat = now
	in.rtt = o.RTT
	in.transport = o.Transport
	in.peer = o.Peer
	in.traceID, in.spanID = o.TraceParent.TraceID, o.TraceParent.ParentID
	statusChanged := in.beatStatus != o.Status || in.beatReason != o.Reason
	in.beatStatus, in.beatReason = o.Status, o.Reason
	s.hooks.Beat(o.Transport, o.RTT, gap, o.TraceParent.TraceID)
	s.hooks.BeatStatus(o.Transport, o.Status)

	// Fast path: an alive instance beating healthily needs no judging. Its
	// wheel entry is lazy: a later deadline is found when the entry comes
	// due; an earlier one (the detector learned a shorter interval) is
	// relinked now, in O(1).
	if in.state == Alive && o.Status == status.Healthy && !statusChanged && in.wheelQueued {
		m.wheel.schedule(in, m.passiveDeadline(in))
		return
	}
	if in.state == Down && o.Status != status.Unhealthy {
		in.okStreak++
	}
	m.judgeLocked(in, now)
}

// clockCreep lets the clock-offset floor rise a little per beat, so it
// follows a sender clock that runs slower than the monitor's (100 µs per
// beat: 100 ppm at 1 s beats).
const clockCreep = 100 * time.Microsecond

// beatDelay is the delay the detector is given for a beat: the RTT the
// sender reports, and for a retransmitted copy also how late the copy
// arrived, measured against the sender's clock: arrival minus the beat's
// own send time (constant for every copy of a beat), minus the smallest
// such difference seen (which absorbs the clock offset and the minimum
// one-way delay). The detector then places a retransmitted beat's origin
// where the sender sent it, instead of learning the retransmission wait as
// interval jitter (AP-13). First transmissions keep the sender's RTT: their
// arrival spread is the network's, which the detector learns as such
// (AP-01).
func (m *Monitor) beatDelay(in *instance, o *ingest.Observation, now time.Duration, restart bool) time.Duration {
	if o.SentAt <= 0 {
		return o.RTT
	}
	off := now - o.SentAt
	if restart || in.beats == 0 || !in.clockSet {
		in.clockOff, in.clockSet = off, true
	} else {
		in.clockOff = min(in.clockOff+clockCreep, off)
	}
	if o.Attempt == 0 {
		return o.RTT
	}
	return o.RTT + off - in.clockOff
}

// observeProbeLocked records one probe result of module index i.
func (m *Monitor) observeProbeLocked(in *instance, i int, r *probe.Result, now time.Duration) (retryIn time.Duration) {
	if in.gone || i >= len(in.active) {
		return 0
	}
	s := in.svc
	a := &in.active[i]
	a.last, a.lastAt = r, now
	a.probes++
	ok := r.Status == status.Healthy || r.Status == status.Degraded
	if ok {
		a.det.Observe(s.cfg.active[i], now, r.Latency)
		a.okAt = now
		a.fails = 0
		a.oks++
		a.succeeded = true
		if in.state == Down {
			in.okStreak++
		}
	} else {
		a.fails++
		a.oks = 0
	}
	if len(r.TraceID) == 32 && len(r.SpanID) == 16 {
		hex.Decode(in.traceID[:], []byte(r.TraceID))
		hex.Decode(in.spanID[:], []byte(r.SpanID))
	}
	if !ok {
		m.logProbeFailure(in, s.cfg.spec.Active[i].Name, a.fails, r)
	}
	s.hooks.Probe(s.cfg.spec.Active[i].Name, r)
	// Retry before counting a failure: a failed probe is retried sooner, so
	// one lost packet or a stale pooled connection is not a suspicion.
	if !ok && a.fails <= s.cfg.spec.Verdict.Retries {
		iv := s.cfg.spec.Active[i].Interval
		retryIn = min(max(iv/4, 100*time.Millisecond), time.Second)
		a.retryAt = now + retryIn
	} else {
		a.retryAt = 0
	}
	m.judgeLocked(in, now)
	return retryIn
}

// evidence summarises what the sources say about an instance now.
type evidence struct {
	failing    bool
	degraded   bool
	known      bool   // at least one source has answered
	definitive bool   // the failure is certain (connection refused by the port)
	leaving    bool   // drained, then silent: a graceful exit
	source     string // passive, active:<module>, or combined
	silence    time.Duration
}

// gather computes the evidence without allocating.
func (m *Monitor) gather(in *instance, now time.Duration) evidence {
	var ev evidence
	s := in.svc
	spec := &s.cfg.spec
	lastOK := in.lastBeat
	if spec.Passive.Enabled && (in.beats > 0 || in.static != nil) {
		switch {
		case in.beats == 0:
			// Declared but never heard: suspicious only after the grace.
			if now-in.registered > spec.Verdict.StartupGrace {
				ev.failing, ev.source = true, "passive"
			}
		case m.passiveSuspect(in, now) && in.beatReason == wire.ReasonDraining:
			// It said it was leaving, then went quiet: a graceful exit,
			// not a failure.
			ev.leaving, ev.degraded, ev.source, ev.known = true, true, "passive", true
		case m.passiveSuspect(in, now):
			ev.failing, ev.source, ev.known = true, "passive", true
		case in.beatStatus == status.Unhealthy && in.beatReason != wire.ReasonDraining:
			ev.failing, ev.source, ev.known = true, "passive", true
		case in.beatStatus == status.Degraded || in.beatReason == wire.ReasonDraining:
			ev.degraded, ev.source, ev.known = true, "passive", true
		default:
			ev.known = true
		}
	}
	for i := range in.active {
		a := &in.active[i]
		// Silence counts from the latest success, not from the latest
		// probe: a failing instance's silence must grow while it fails, or
		// the overwhelm rule (protection.go) cannot tell a dead instance
		// from the slow crowd.
		if a.okAt > lastOK {
			lastOK = a.okAt
		}
		if a.last == nil || (!a.succeeded && a.fails > 0 && a.fails <= spec.Verdict.Retries) {
			continue // no verdict from this probe yet: a first failure is being retried
		}
		ev.known = true
		switch {
		case a.fails > spec.Verdict.Retries:
			if !ev.failing {
				ev.source = "active:" + spec.Active[i].Name
			}
			ev.failing = true
			if a.last.Class == status.ClassRefused && !a.last.Connected {
				ev.definitive = true
			}
		case a.fails == 0 && a.last.Status == status.Degraded:
			if !ev.failing && !ev.degraded {
				ev.source = "active:" + spec.Active[i].Name
			}
			ev.degraded = true
		}
	}
	if lastOK == 0 {
		lastOK = in.registered
	}
	ev.silence = now - lastOK
	return ev
}

func (m *Monitor) passiveSuspect(in *instance, now time.Duration) bool {
	if in.alt != nil {
		return in.alt.Suspect(now)
	}
	return in.passive.Suspect(in.svc.cfg.passive, now)
}

func (m *Monitor) passiveDeadline(in *instance) time.Duration {
	if in.alt != nil {
		return in.alt.Deadline()
	}
	return in.passive.Deadline(in.svc.cfg.passive)
}

// judgeLocked decides the instance's state now and schedules its next
// visit. It is the whole state machine.
func (m *Monitor) judgeLocked(in *instance, now time.Duration) {
	if in.gone {
		return
	}
	if in.removeAt > 0 && now >= in.removeAt {
		m.transitionLocked(in, Left, "config", "removed from the configuration", now)
		m.deleteInstanceLocked(in)
		return
	}
	if in.foreign {
		return // its owner judges it; Mirror keeps the state
	}
	if in.removeAt > 0 {
		// Leaving: its beats are no longer accepted, so silence is
		// expected, not a failure.
		m.wheel.schedule(in, in.removeAt)
		return
	}
	s := in.svc
	v := &s.cfg.spec.Verdict
	ev := m.gather(in, now)
	next := now + time.Hour

	switch {
	case ev.failing:
		in.okStreak = 0
		switch in.state {
		case Unknown, Alive, Degraded:
			m.countFlapLocked(in, now)
			m.transitionLocked(in, Suspect, ev.source, m.failReason(in, ev, now), now)
			next = now + v.DownAfter
		case Suspect:
			if until := in.since + v.DownAfter; now < until {
				next = until
				break
			}
			next = m.confirmLocked(in, ev, now)
		case Protected:
			next = m.confirmLocked(in, ev, now)
		case Down:
		}
		// An instance registered by its beats that has been silent this
		// long is gone (a replaced pod): forget it, whatever protection
		// or the ejection cap made of it.
		if f := v.ForgetAfter; f > 0 && in.static == nil {
			if ev.silence >= f {
				m.transitionLocked(in, Left, "config", fmt.Sprintf("forgotten: silent for %s and not declared in the configuration", ev.silence.Round(time.Second)), now)
				m.deleteInstanceLocked(in)
				return
			}
			next = min(next, now+f-ev.silence)
		}
	case ev.leaving && in.static == nil:
		m.transitionLocked(in, Left, "passive", "left: drained, then stopped beating", now)
		m.deleteInstanceLocked(in)
		return
	case !ev.known:
		// Nothing heard yet: stay unknown; the grace ends a wait.
		if in.state == Unknown {
			next = in.registered + v.StartupGrace + m.opts.Tick
		}
	default:
		next = m.recoverLocked(in, ev, now)
	}

	// Wake for the earliest thing that can change the verdict by itself.
	if s.cfg.spec.Passive.Enabled && in.beats > 0 && !ev.failing {
		if d := m.passiveDeadline(in); d < next {
			next = d
		}
	}
	if in.removeAt > 0 && in.removeAt < next {
		next = in.removeAt
	}
	if next <= now {
		next = now + m.opts.Tick
	}
	m.wheel.schedule(in, next)
}

// confirmLocked decides what a failing instance that waited down_after
// becomes: down, or protected when protection holds, the ejection cap is
// reached, or ejections are backing off. It returns the next visit.
func (m *Monitor) confirmLocked(in *instance, ev evidence, now time.Duration) time.Duration {
	s := in.svc
	v := &s.cfg.spec.Verdict
	p := &s.cfg.spec.Protection
	recheck := now + max(time.Second, m.opts.Tick)

	if now-m.startedAt < v.StartupGrace {
		// The monitor itself just (re)started: it was away, not the fleet.
		return m.startedAt + v.StartupGrace
	}
	if m.isolation.active {
		m.protectLocked(in, "protection: the monitor's own connectivity check fails ("+m.isolation.reason+"); no down verdicts", now)
		return recheck
	}
	if !p.Disabled {
		if hold, until, why := m.coincidentLocked(in, ev, now); hold {
			if in.reason != why {
				m.transitionLocked(in, Suspect, "protection", why, now)
			}
			return until
		}
		if g := m.protectingGroup(in); g != nil && !m.overwhelmingLocked(in, g, ev, now) {
			m.protectLocked(in, "protection: "+g.reason, now)
			return recheck
		}
		capN := max(1, int(math.Floor(p.MaxEjection*float64(s.all.total))))
		if s.downs >= capN {
			if in.state != Protected {
				m.hooks.EjectionCapped(s.name)
			}
			m.protectLocked(in, fmt.Sprintf("ejection cap: %d of %d instances already down (max %.0f%%)", s.downs, s.all.total, p.MaxEjection*100), now)
			if s.all.paceWait == 0 {
				s.all.startPacing(p, now)
			}
			return recheck
		}
		for _, g := range [2]*group{in.zone, &s.all} {
			if next := g.pacedUntil(now); next > 0 {
				what := "the ejection cap or the service's protection"
				if g != &s.all {
					what = fmt.Sprintf("protection of zone %s", g.name)
				}
				m.protectLocked(in, fmt.Sprintf("ejections paced after %s: next allowed in %s", what, (next-now).Round(time.Millisecond)), now)
				return next
			}
		}
	}
	if ok, next := m.confirmDownLocked(in, now); !ok {
		return next
	}
	reason := m.failReason(in, ev, now)
	if in.state == Protected {
		reason = "confirmed after protection: " + reason
	}
	if in.confirm != nil && in.confirm.agree {
		reason += "; confirmed by other zones: " + in.confirm.reason
	}
	m.transitionLocked(in, Down, ev.source, reason, now)
	in.zone.released(p, now)
	s.all.released(p, now)
	return now + time.Hour
}

func (m *Monitor) protectLocked(in *instance, reason string, now time.Duration) {
	if in.state == Protected && in.reason == reason {
		return
	}
	if in.state == Protected {
		in.reason = reason // same state, new reason: no event
		return
	}
	m.transitionLocked(in, Protected, "protection", reason, now)
}

// recoverLocked handles an instance whose sources are satisfied (or only
// degraded).
func (m *Monitor) recoverLocked(in *instance, ev evidence, now time.Duration) time.Duration {
	s := in.svc
	v := &s.cfg.spec.Verdict
	next := now + time.Hour
	if in.state == Down {
		if int(in.okStreak) < v.RecoverAfter {
			return next // more good observations needed (hysteresis)
		}
	}
	if held, until := m.flapHeld(in, now); held {
		reason := fmt.Sprintf("flapping: penalty %.0f above %.0f; back in service when it decays below %.0f", m.flapPenalty(in, now), s.cfg.spec.Verdict.Flap.Suppress, s.cfg.spec.Verdict.Flap.Reuse)
		if in.state != Degraded {
			m.transitionLocked(in, Degraded, "combined", reason, now)
		}
		return until
	}
	if ev.degraded {
		if in.state != Degraded || !strings.HasPrefix(in.reason, "degraded") {
			m.transitionLocked(in, Degraded, ev.source, m.degradedReason(in, ev), now)
		}
		return next
	}
	if in.state != Alive {
		var reason string
		switch in.state {
		case Down:
			reason = fmt.Sprintf("recovered: %d good observations in a row", in.okStreak)
		case Unknown:
			reason = "first good observation"
		default:
			reason = "answering again"
		}
		m.transitionLocked(in, Alive, m.okSource(in), reason, now)
	}
	return next
}

func (m *Monitor) okSource(in *instance) string {
	if in.beats > 0 && len(in.active) > 0 {
		return "combined"
	}
	if len(in.active) > 0 {
		return "active"
	}
	return "passive"
}

// failReason explains a failure in one line.
func (m *Monitor) failReason(in *instance, ev evidence, now time.Duration) string {
	s := in.svc
	if strings.HasPrefix(ev.source, "active:") {
		for i := range in.active {
			a := &in.active[i]
			if a.last == nil || a.fails <= s.cfg.spec.Verdict.Retries {
				continue
			}
			why := a.last.Reason
			if why == "" && a.last.Err != nil {
				why = a.last.Err.Error()
			}
			cls := string(a.last.Class)
			if cls == "" {
				cls = "failure"
			}
			return fmt.Sprintf("probe %s failed %d times (%s): %s", s.cfg.spec.Active[i].Name, a.fails, cls, why)
		}
	}
	if in.beats == 0 {
		return fmt.Sprintf("no beat since registration %s ago", (now - in.registered).Round(time.Millisecond))
	}
	if in.beatStatus == status.Unhealthy && !m.passiveSuspect(in, now) {
		return "the instance reports itself unhealthy (" + in.beatReason.String() + ")"
	}
	if in.alt != nil {
		return in.alt.Explain(now)
	}
	return in.passive.Explain(s.cfg.passive, now)
}

func (m *Monitor) degradedReason(in *instance, ev evidence) string {
	if strings.HasPrefix(ev.source, "active:") {
		for i := range in.active {
			a := &in.active[i]
			if a.last != nil && a.last.Status == status.Degraded {
				return "degraded: " + a.last.Reason
			}
		}
	}
	if in.beatReason == wire.ReasonDraining {
		return "degraded: draining (the instance is leaving on purpose)"
	}
	return "degraded: the instance reports itself degraded (" + in.beatReason.String() + ")"
}

// Flap damping, as BGP route dampening: every fall from alive adds a
// penalty that decays exponentially; above Suppress the instance is held
// out (degraded) until the penalty decays below Reuse.
func (m *Monitor) flapPenalty(in *instance, now time.Duration) float64 {
	if in.flap == 0 {
		return 0
	}
	hl := in.svc.cfg.spec.Verdict.Flap.HalfLife
	return float64(in.flap) * math.Exp2(-float64(now-in.flapAt)/float64(hl))
}

func (m *Monitor) countFlapLocked(in *instance, now time.Duration) {
	f := &in.svc.cfg.spec.Verdict.Flap
	if f.Disabled || f.HalfLife <= 0 || in.state != Alive {
		return
	}
	in.flap = float32(m.flapPenalty(in, now) + f.Penalty)
	in.flapAt = now
}

// flapHeld reports whether flap damping holds the instance out, and until
// when (the instant its penalty decays below Reuse).
func (m *Monitor) flapHeld(in *instance, now time.Duration) (bool, time.Duration) {
	f := &in.svc.cfg.spec.Verdict.Flap
	if f.Disabled || in.flap == 0 {
		return false, 0
	}
	p := m.flapPenalty(in, now)
	held := p > f.Suppress || (in.state == Degraded && strings.HasPrefix(in.reason, "flapping") && p > f.Reuse)
	if !held {
		return false, 0
	}
	until := in.flapAt + time.Duration(float64(f.HalfLife)*math.Log2(float64(in.flap)/f.Reuse)) + time.Millisecond
	return true, until
}

// logProbeFailure writes the AP-14 line for a failed probe (after the lock
// is released): everything needed to follow the failure, the trace and
// span ids of the probe's own span first.
func (m *Monitor) logProbeFailure(in *instance, module string, attempt int, r *probe.Result) {
	svc, inst, zone := in.svc.name, in.name, in.zone.name
	peer := r.Peer
	if peer == "" {
		peer = r.Target
	}
	class := string(r.Class)
	if class == "" {
		class = string(status.ClassOther)
	}
	reason := r.Reason
	if reason == "" && r.Err != nil {
		reason = r.Err.Error()
	}
	traceID, spanID, latency := r.TraceID, r.SpanID, r.Latency
	m.later(func() {
		m.log.Warn("probe failed", "trace_id", traceID, "span_id", spanID, "peer_addr", peer, "service", svc,
			"instance", inst, "zone", zone, "module", module, "source", "active", "attempt", attempt,
			"latency", latency, "error_class", class, "reason", reason)
	})
}

// coincidentLocked holds a down verdict while suspicion in the instance's
// zone (or service) is building: independent failures rarely coincide, so
// when other instances turned suspect around the same time, the picture is
// given up to three down_after periods to become a correlated failure
// (and protection) instead of ejecting the first few victims of a network
// fault, whose detectors simply expired first. A single failing instance,
// or a definitive failure (a refusing port), is not held.
func (m *Monitor) coincidentLocked(in *instance, ev evidence, now time.Duration) (hold bool, until time.Duration, why string) {
	if ev.definitive {
		return false, 0, ""
	}
	s := in.svc
	p := &s.cfg.spec.Protection
	v := &s.cfg.spec.Verdict
	until = in.since + 3*v.DownAfter
	if in.state != Suspect || now >= until {
		return false, 0, ""
	}
	for _, g := range []*group{in.zone, &s.all} {
		if g.total < p.MinGroup {
			continue
		}
		n := g.counts[Suspect] + g.counts[Protected]
		share := float64(n) / float64(g.total)
		if n >= 2 && share >= p.SuspectShare/3 {
			what := "zone " + g.name
			if g == &s.all || g.name == "" {
				what = "service " + s.name
			}
			return true, until, fmt.Sprintf("holding the down verdict: other instances of %s turned suspect at the same time; waiting up to %s to tell a correlated failure from individual ones",
				what, 3*v.DownAfter)
		}
	}
	return false, 0, ""
}
