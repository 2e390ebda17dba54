package monitor

import (
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/fb4b1dcc/pulse/status"
)

// InstanceView is a copy of one instance's state for the API.
type InstanceView struct {
	Service   string            `json:"service"`
	Instance  string            `json:"instance"`
	Zone      string            `json:"zone"`
	Target    string            `json:"target,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	State     State             `json:"state"`
	Since     time.Time         `json:"since"`
	Reason    string            `json:"reason"`
	Source    string            `json:"source"`
	Static    bool              `json:"static"`
	LastBeat  time.Time         `json:"last_beat,omitzero"`
	LastProbe time.Time         `json:"last_probe,omitzero"`
	// RTT is the best estimate of the round trip: the sender's reported
	// RTT for beats, else the smoothed probe latency.
	RTT time.Duration `json:"rtt_ns"`
	// Interval is the learned beat interval; Deadline the instant the
	// passive detector will suspect if no beat arrives; Suspicion its
	// current level (threshold 8).
	Interval  time.Duration `json:"interval_ns"`
	Deadline  time.Time     `json:"deadline,omitzero"`
	Suspicion float64       `json:"suspicion"`
	Beats     uint64        `json:"beats"`
	Transport string        `json:"transport,omitempty"`
	Reported  status.Status `json:"reported"` // the instance's own status in its beats
	TraceID   string        `json:"trace_id,omitempty"`
	Flap      float64       `json:"flap_penalty"`
	Probes    []ProbeView   `json:"probes,omitempty"`
	Sources   []string      `json:"sources"`
}

// ProbeView is the latest result of one probe module on an instance.
type ProbeView struct {
	Module     string        `json:"module"`
	Status     status.Status `json:"status"`
	Class      string        `json:"error_class,omitempty"`
	Reason     string        `json:"reason,omitempty"`
	Latency    time.Duration `json:"latency_ns"`
	Phases     status.Phases `json:"phases"`
	HTTPStatus int           `json:"http_status,omitempty"`
	Body       string        `json:"body,omitempty"`
	At         time.Time     `json:"at"`
	Fails      int           `json:"consecutive_failures"`
	Probes     uint64        `json:"probes"`
	TraceID    string        `json:"trace_id,omitempty"`
	Peer       string        `json:"peer,omitempty"`
}

// ZoneView summarises one zone of a service.
type ZoneView struct {
	Name         string         `json:"name"`
	Instances    int            `json:"instances"`
	Counts       map[string]int `json:"counts"`
	Protected    bool           `json:"protected"`
	Reason       string         `json:"protection_reason,omitempty"`
	Since        time.Time      `json:"protected_since,omitzero"`
	SuspectShare float64        `json:"suspect_share"`
}

// ServiceView summarises one service.
type ServiceView struct {
	Name      string         `json:"name"`
	Instances int            `json:"instances"`
	Counts    map[string]int `json:"counts"`
	Zones     []ZoneView     `json:"zones"`
	Protected bool           `json:"protected"`
	Reason    string         `json:"protection_reason,omitempty"`
	Since     time.Time      `json:"protected_since,omitzero"`
	Down      int            `json:"down"`
	MaxDown   int            `json:"max_down"`
	Passive   bool           `json:"passive"`
	Interval  time.Duration  `json:"interval_ns,omitempty"`
	Probes    []string       `json:"probes,omitempty"`
}

// Filter selects instances.
type Filter struct {
	States []State // empty: every state
	Zone   string  // empty: every zone
	Search string  // substring of the name, zone, reason or a label value
	Limit  int     // 0: no limit
	Offset int
}

func counts(g *group) map[string]int {
	out := make(map[string]int, numStates)
	for s := State(0); s < numStates; s++ {
		if s == Left {
			continue
		}
		out[s.String()] = g.counts[s]
	}
	return out
}

func (m *Monitor) serviceViewLocked(s *service, now time.Duration) ServiceView {
	v := ServiceView{Name: s.name, Instances: s.all.total, Counts: counts(&s.all), Protected: s.all.protected,
		Down: s.downs, Passive: s.cfg.spec.Passive.Enabled}
	if s.all.protected {
		v.Reason, v.Since = s.all.reason, m.wall(s.all.since)
	}
	p := s.cfg.spec.Protection
	v.MaxDown = max(1, int(p.MaxEjection*float64(s.all.total)))
	if v.Passive {
		v.Interval = s.cfg.spec.Passive.Interval
	}
	for _, a := range s.cfg.spec.Active {
		v.Probes = append(v.Probes, a.Name)
	}
	for _, name := range sortedNames(s.zones) {
		g := s.zones[name]
		z := ZoneView{Name: name, Instances: g.total, Counts: counts(g), Protected: g.protected,
			SuspectShare: g.suspectShare(now, protectionWindow(s))}
		if g.protected {
			z.Reason, z.Since = g.reason, m.wall(g.since)
		}
		v.Zones = append(v.Zones, z)
	}
	return v
}

// Services returns every service, by name.
func (m *Monitor) Services() []ServiceView {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	out := make([]ServiceView, 0, len(m.order))
	for _, s := range m.order {
		out = append(out, m.serviceViewLocked(s, now))
	}
	return out
}

// Service returns one service.
func (m *Monitor) Service(name string) (ServiceView, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.services[name]
	if s == nil {
		return ServiceView{}, fmt.Errorf("%w: service %q", ErrNotFound, name)
	}
	return m.serviceViewLocked(s, m.now()), nil
}

func (m *Monitor) instanceViewLocked(in *instance, now time.Duration) InstanceView {
	s := in.svc
	v := InstanceView{Service: s.name, Instance: in.name, Zone: in.zone.name, State: in.state,
		Since: m.wall(in.since), Reason: in.reason, Source: in.source, Beats: in.beats,
		Reported: in.beatStatus, Flap: m.flapPenalty(in, now), Static: in.static != nil}
	if in.static != nil {
		v.Target = in.static.target
		v.Labels = maps.Clone(in.static.labels)
	}
	if in.traceID != ([16]byte{}) {
		v.TraceID = hexTrace(in.traceID)
	}
	if in.beats > 0 {
		v.Sources = append(v.Sources, "passive")
		v.LastBeat = m.wall(in.lastBeat)
		v.Transport = in.transport.String()
		v.RTT = in.rtt
		if in.alt != nil {
			v.Suspicion = in.alt.Suspicion(now)
			if d := in.alt.Deadline(); d < 1<<62 {
				v.Deadline = m.wall(d)
			}
		} else {
			est := in.passive.Estimate()
			v.Interval = est.Interval
			if v.RTT == 0 {
				v.RTT = est.RTT
			}
			v.Suspicion = in.passive.Suspicion(s.cfg.passive, now)
			if d := in.passive.Deadline(s.cfg.passive); d < 1<<62 {
				v.Deadline = m.wall(d)
			}
		}
	}
	for i := range in.active {
		a := &in.active[i]
		if a.last == nil {
			continue
		}
		name := s.cfg.spec.Active[i].Name
		v.Sources = append(v.Sources, "active:"+name)
		r := a.last
		pv := ProbeView{Module: name, Status: r.Status, Class: string(r.Class), Reason: r.Reason, Latency: r.Latency,
			Phases: r.Phases, HTTPStatus: r.HTTPStatus, Body: r.Body, At: m.wall(a.lastAt), Fails: a.fails,
			Probes: a.probes, TraceID: r.TraceID, Peer: r.Peer}
		v.Probes = append(v.Probes, pv)
		if t := m.wall(a.lastAt); t.After(v.LastProbe) {
			v.LastProbe = t
		}
		if v.RTT == 0 && a.succeeded {
			v.RTT = a.det.Estimate().RTT
		}
	}
	return v
}

// Instances returns the instances of a service matching f, sorted by name,
// and how many matched before Limit and Offset.
func (m *Monitor) Instances(service string, f Filter) ([]InstanceView, int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.services[service]
	if s == nil {
		return nil, 0, fmt.Errorf("%w: service %q", ErrNotFound, service)
	}
	now := m.now()
	var want [numStates]bool
	for _, st := range f.States {
		if st < numStates {
			want[st] = true
		}
	}
	search := strings.ToLower(f.Search)
	names := make([]string, 0, len(s.byName))
	for name, in := range s.byName {
		if len(f.States) > 0 && !want[in.state] {
			continue
		}
		if f.Zone != "" && in.zone.name != f.Zone {
			continue
		}
		if search != "" && !matches(in, search) {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	total := len(names)
	if f.Offset > 0 {
		names = names[min(f.Offset, len(names)):]
	}
	if f.Limit > 0 && len(names) > f.Limit {
		names = names[:f.Limit]
	}
	out := make([]InstanceView, 0, len(names))
	for _, n := range names {
		out = append(out, m.instanceViewLocked(s.byName[n], now))
	}
	return out, total, nil
}

func matches(in *instance, q string) bool {
	if strings.Contains(strings.ToLower(in.name), q) || strings.Contains(strings.ToLower(in.zone.name), q) ||
		strings.Contains(strings.ToLower(in.reason), q) {
		return true
	}
	if in.static != nil {
		for _, v := range in.static.labels {
			if strings.Contains(strings.ToLower(v), q) {
				return true
			}
		}
	}
	return false
}

// Instance returns one instance.
func (m *Monitor) Instance(service, name string) (InstanceView, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.services[service]
	if s == nil {
		return InstanceView{}, fmt.Errorf("%w: service %q", ErrNotFound, service)
	}
	in := s.byName[name]
	if in == nil {
		return InstanceView{}, fmt.Errorf("%w: instance %q of service %q", ErrNotFound, name, service)
	}
	return m.instanceViewLocked(in, m.now()), nil
}

// Counts returns, per service and zone, the number of instances in each
// state: what the pulse_instances gauge exports. It walks groups, not
// instances.
func (m *Monitor) Counts(fn func(service, zone string, st State, n int)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.order {
		for _, name := range sortedNames(s.zones) {
			g := s.zones[name]
			for st := State(0); st < Left; st++ {
				fn(s.name, name, st, g.counts[st])
			}
		}
	}
}

// WholeService is the zone name that stands for a service as a whole in
// ProtectionStatus (instances without a zone are in zone "").
const WholeService = "*"

// ProtectionStatus reports, per service and zone (WholeService for the
// service as a whole), whether protection is on.
func (m *Monitor) ProtectionStatus(fn func(service, zone string, on bool)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.order {
		fn(s.name, WholeService, s.all.protected)
		for _, name := range sortedNames(s.zones) {
			fn(s.name, name, s.zones[name].protected)
		}
	}
}
