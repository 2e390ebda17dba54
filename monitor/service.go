package monitor

import (
	"fmt"
	"maps"
	"net/netip"
	"time"

	"github.com/fb4b1dcc/pulse/detector"
	"github.com/fb4b1dcc/pulse/probe"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// serviceConfig is a ServiceSpec with everything that can fail built
// before the lock is taken.
type serviceConfig struct {
	spec    ServiceSpec
	passive *detector.AdaptiveParams
	// alt builds a baseline detector when the spec asks for one (nil for
	// the default adaptive detector).
	alt    func() (detector.Detector, error)
	active []*detector.AdaptiveParams // per spec.Active entry
}

func (m *Monitor) buildServiceConfig(ss *ServiceSpec) (*serviceConfig, error) {
	sc := &serviceConfig{spec: *ss}
	iv := ss.Passive.Interval
	if iv <= 0 {
		iv = time.Second
	}
	d := ss.Detector
	acfg := detector.AdaptiveConfig{Interval: iv, Threshold: d.Threshold, Floor: d.Floor, Ceiling: d.Ceiling}
	p, err := detector.NewAdaptiveParams(acfg, m.ledger)
	if err != nil {
		return nil, fmt.Errorf("monitor: service %s: %w", ss.Name, err)
	}
	sc.passive = p
	switch d.Type {
	case "", "adaptive":
	case "fixed":
		timeout := d.Timeout
		sc.alt = func() (detector.Detector, error) { return detector.NewFixed(timeout) }
	case "phi":
		th := d.Threshold
		sc.alt = func() (detector.Detector, error) {
			return detector.NewPhiNormal(detector.PhiNormalConfig{Threshold: th, FirstEstimate: iv})
		}
	case "phi-exponential":
		th := d.Threshold
		sc.alt = func() (detector.Detector, error) {
			return detector.NewPhiExponential(detector.PhiExponentialConfig{Threshold: th, Initial: 2 * iv})
		}
	case "seedfix":
		sc.alt = func() (detector.Detector, error) { return detector.NewSeedFix(detector.SeedFixConfig{Interval: iv}) }
	default:
		return nil, fmt.Errorf("monitor: service %s: unknown detector %q", ss.Name, d.Type)
	}
	if sc.alt != nil {
		if _, err := sc.alt(); err != nil {
			return nil, fmt.Errorf("monitor: service %s: %w", ss.Name, err)
		}
	}
	for _, a := range ss.Active {
		if a.Interval <= 0 {
			return nil, fmt.Errorf("monitor: service %s: probe %s has no interval", ss.Name, a.Name)
		}
		ap, err := detector.NewAdaptiveParams(detector.AdaptiveConfig{Interval: a.Interval, Threshold: d.Threshold}, m.ledger)
		if err != nil {
			return nil, fmt.Errorf("monitor: service %s: probe %s: %w", ss.Name, a.Name, err)
		}
		sc.active = append(sc.active, ap)
	}
	return sc, nil
}

// service is one monitored service. Guarded by Monitor.mu.
type service struct {
	name    string
	cfg     *serviceConfig
	hooks   ServiceHooks
	byName  map[string]*instance
	zones   map[string]*group
	all     group // the whole service
	removed bool

	downs int // instances in Down now
}

func newService(name string, hooks ServiceHooks) *service {
	return &service{name: name, hooks: hooks, byName: map[string]*instance{}, zones: map[string]*group{}, all: group{name: ""}}
}

// group counts a zone's (or the whole service's) instances per state and
// holds its protection status.
type group struct {
	name        string
	total       int
	counts      [numStates]int
	recentDowns []time.Duration // instants of recent down verdicts
	protected   bool
	since       time.Duration
	reason      string
	lowSince    time.Duration // share below the release level since (0: not below)
	// typical silence of the group's suspects, cached per judge tick
	typicalAt time.Duration
	typical   time.Duration
	// Paced release of downs after this group's protection episode (for
	// the whole service also after the ejection cap was hit): one down per
	// wait, the wait doubling up to backoff_max; the pacing ends
	// backoff_max after the episode. Per group, so that one zone's blip
	// does not hold up verdicts in the others.
	paceWait  time.Duration // 0: not pacing
	paceLast  time.Duration // the episode's end or the last down released
	paceUntil time.Duration
}

// startPacing begins (or, for a new episode, restarts) the paced release.
func (g *group) startPacing(p *ProtectionSpec, now time.Duration) {
	g.paceWait, g.paceLast, g.paceUntil = p.Backoff, now, now+p.BackoffMax
}

// pacedUntil returns when g next lets a down through, or 0 if it does not
// hold one back at now.
func (g *group) pacedUntil(now time.Duration) time.Duration {
	if g.paceWait == 0 {
		return 0
	}
	if now >= g.paceUntil {
		g.paceWait = 0 // the episode is over
		return 0
	}
	if next := g.paceLast + g.paceWait; now < next {
		return next
	}
	return 0
}

// released records a down let through while pacing: the wait doubles.
func (g *group) released(p *ProtectionSpec, now time.Duration) {
	if g.paceWait > 0 {
		g.paceLast = now
		g.paceWait = min(2*g.paceWait, p.BackoffMax)
	}
}

// instance is one monitored instance. Guarded by Monitor.mu. It is sized
// for a million per monitor: the detector state is inline and pointer-free,
// optional parts hang off pointers that stay nil when unused.
type instance struct {
	svc    *service
	zone   *group
	name   string
	static *staticInfo // nil for instances registered by their beats

	state  State
	since  time.Duration
	reason string
	source string // source of the latest transition

	passive detector.Adaptive
	alt     detector.Detector // non-default passive detector, when configured
	active  []activeState     // one per probe of the service

	registered time.Duration
	lastBeat   time.Duration // 0: never
	beats      uint64
	epoch      uint64
	rtt        time.Duration // sender-reported
	clockOff   time.Duration // floor of arrival − sender's send time (see beatDelay)
	clockSet   bool
	beatStatus status.Status
	beatReason wire.Reason
	transport  wire.Transport
	peer       netip.AddrPort // where the latest beat came from
	traceID    [16]byte       // trace and span of the latest evidence
	spanID     [8]byte

	okStreak uint16 // consecutive good observations while down
	flap     float32
	flapAt   time.Duration
	removeAt time.Duration // >0: leaves at this time (removed from config)
	dirty    bool          // snapshot changed since last save
	gone     bool          // deleted; stale wheel or task references ignore it
	foreign  bool          // owned by another node (cluster mode): mirrored, not judged
	confirm  *confirmation // multi-vantage check before down (cluster mode)

	wheelNext, wheelPrev *instance
	wheelAt              time.Duration
	wheelSlot            int32
	wheelQueued          bool
}

// staticInfo is what the config says about a declared instance.
type staticInfo struct {
	target string
	labels map[string]string
}

// activeState is one probe module's view of an instance.
type activeState struct {
	det       detector.Adaptive
	fails     int // consecutive failures
	oks       int // consecutive successes
	last      *probe.Result
	lastAt    time.Duration
	okAt      time.Duration // the latest successful probe (0: none): silence counts from it
	retryAt   time.Duration // a retry is scheduled for this instant (0: none)
	probes    uint64
	succeeded bool // ever
}

func (s *service) zoneOf(name string) *group {
	z := s.zones[name]
	if z == nil {
		z = &group{name: name}
		s.zones[name] = z
	}
	return z
}

// applyServiceLocked installs a new config for s: declared instances are
// created or updated, instances no longer declared get a removal grace.
func (m *Monitor) applyServiceLocked(s *service, sc *serviceConfig, now time.Duration) {
	old := s.cfg
	s.cfg = sc
	s.removed = false
	declared := make(map[string]bool, len(sc.spec.Instances))
	for _, is := range sc.spec.Instances {
		declared[is.Name] = true
		in := s.byName[is.Name]
		if in == nil {
			in = m.newInstanceLocked(s, is.Name, is.Zone, now)
		} else if in.zone.name != is.Zone {
			m.moveZoneLocked(in, is.Zone)
		}
		in.static = &staticInfo{target: is.Target, labels: maps.Clone(is.Labels)}
		in.removeAt = 0
		in.dirty = true
	}
	for _, in := range s.byName {
		if in.static != nil && !declared[in.name] && in.removeAt == 0 {
			in.removeAt = now + sc.spec.Verdict.RemoveGrace
			m.wheel.schedule(in, in.removeAt)
		}
	}
	// Detector changes: a new type resets that state; new parameters of
	// the same type keep what was learned.
	typeChanged := old == nil || old.spec.Detector.Type != sc.spec.Detector.Type
	intervalChanged := old != nil && old.spec.Passive.Interval != sc.spec.Passive.Interval
	for _, in := range s.byName {
		if typeChanged {
			m.resetAltLocked(in)
		}
		if intervalChanged && in.beats > 0 && (in.state == Alive || in.state == Degraded) {
			// Senders switch at their next ACK. Re-seed the estimate with
			// the new interval so a doubled interval is not read as 50%
			// loss (nor a halved one as a sender that got chatty); only
			// instances heard recently: re-seeding a silent one would
			// pretend it was just heard.
			est := in.passive.Estimate()
			est.Interval = sc.spec.Passive.Interval
			in.passive.Seed(sc.passive, est, now)
		}
		if len(in.active) != len(sc.spec.Active) {
			in.active = resizeActive(in.active, len(sc.spec.Active))
		}
		m.judgeLocked(in, now)
	}
}

func resizeActive(a []activeState, n int) []activeState {
	if n == 0 {
		return nil
	}
	out := make([]activeState, n)
	copy(out, a)
	return out
}

func (m *Monitor) resetAltLocked(in *instance) {
	in.alt = nil
	if in.svc.cfg.alt != nil {
		d, err := in.svc.cfg.alt()
		if err == nil {
			in.alt = d
		}
	}
}

func (m *Monitor) newInstanceLocked(s *service, name, zone string, now time.Duration) *instance {
	in := &instance{svc: s, name: name, registered: now, since: now, dirty: true, foreign: !m.owns(s.name, name)}
	in.zone = s.zoneOf(zone)
	in.zone.total++
	in.zone.counts[Unknown]++
	s.all.total++
	s.all.counts[Unknown]++
	if n := len(s.cfg.spec.Active); n > 0 {
		in.active = make([]activeState, n)
	}
	m.resetAltLocked(in)
	s.byName[name] = in
	m.sched.instanceAdded(in)
	return in
}

func (m *Monitor) moveZoneLocked(in *instance, zone string) {
	in.zone.total--
	in.zone.counts[in.state]--
	in.zone = in.svc.zoneOf(zone)
	in.zone.total++
	in.zone.counts[in.state]++
}

// deleteInstanceLocked forgets an instance.
func (m *Monitor) deleteInstanceLocked(in *instance) {
	s := in.svc
	if s.byName[in.name] != in {
		return
	}
	delete(s.byName, in.name)
	in.zone.total--
	in.zone.counts[in.state]--
	s.all.total--
	s.all.counts[in.state]--
	if in.state == Down {
		s.downs--
	}
	if in.zone.total == 0 && len(s.zones) > 1 {
		delete(s.zones, in.zone.name)
	}
	m.wheel.unlink(in)
	in.gone = true
	m.sched.instanceRemoved(in)
	m.deleteSnapshotLocked(in)
	m.dropServiceLocked(s)
}

func (m *Monitor) removeServiceLocked(s *service, now time.Duration) {
	s.removed = true
	if len(s.byName) == 0 {
		m.dropServiceLocked(s)
		return
	}
	for _, in := range s.byName {
		if in.removeAt == 0 {
			in.removeAt = now + s.cfg.spec.Verdict.RemoveGrace
			m.wheel.schedule(in, in.removeAt)
		}
	}
}

// dropServiceLocked forgets a removed service once its last instance left.
func (m *Monitor) dropServiceLocked(s *service) {
	if !s.removed || len(s.byName) > 0 || m.services[s.name] != s {
		return
	}
	delete(m.services, s.name)
	for i, o := range m.order {
		if o == s {
			m.order = append(m.order[:i], m.order[i+1:]...)
			break
		}
	}
}
