package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/fb4b1dcc/pulse/monitor"
)

// buildService merges a service's settings over the defaults section over
// the preset, field by field, and validates the result.
func buildService(field string, s Service, d Policy, preset Preset, modules map[string]moduleDef, p *problems) monitor.ServiceSpec {
	out := monitor.ServiceSpec{Name: s.Name, PerInstanceMetrics: s.Metrics.PerInstance}
	if !nameRE.MatchString(s.Name) {
		p.add(field+".name", "%q is not a valid service name (letters, digits, '.', '_', '-'; at most 128)", s.Name)
	}

	// Passive: on when either the service or the defaults section says so.
	pas := preset.Passive
	passiveSet := s.Passive != nil || d.Passive != nil
	for _, src := range []struct {
		field string
		v     *Passive
	}{{"defaults.passive", d.Passive}, {field + ".passive", s.Passive}} {
		if src.v == nil {
			continue
		}
		pas.Interval = src.v.Interval.Or(pas.Interval)
		pas.Jitter = src.v.Jitter.Or(pas.Jitter)
		for i, k := range src.v.Keys {
			kf := fmt.Sprintf("%s.keys[%d]", src.field, i)
			if pas.Keys == nil {
				pas.Keys = map[uint16][]byte{}
			}
			if _, dup := pas.Keys[k.ID]; dup && src.field == field+".passive" {
				p.add(kf+".id", "key id %d is used twice", k.ID)
			}
			if v := resolveSecret(p, kf+".secret", k.Secret); v != nil {
				pas.Keys[k.ID] = v
			}
		}
		for i, t := range src.v.Tokens {
			if v := resolveSecret(p, fmt.Sprintf("%s.tokens[%d]", src.field, i), t); v != nil {
				pas.Tokens = append(pas.Tokens, v)
			}
		}
	}
	pas.Enabled = passiveSet
	if passiveSet {
		pf := field + ".passive"
		checkRange(p, pf+".interval", pas.Interval, minInterval, maxInterval)
		if pas.Jitter < 0 || pas.Jitter > pas.Interval/2 {
			p.add(pf+".jitter", "%s must be between 0 and half the interval (%s)", pas.Jitter, pas.Interval/2)
		}
		if len(pas.Keys) == 0 && len(pas.Tokens) == 0 {
			p.add(pf, "beats would all be refused: add keys (HMAC keys for UDP beats) or tokens (bearer tokens for HTTP/gRPC beats)")
		}
	}
	out.Passive = pas

	out.RegisterByBeats = passiveSet
	if s.RegisterByBeats != nil {
		out.RegisterByBeats = *s.RegisterByBeats
		if out.RegisterByBeats && !passiveSet {
			p.add(field+".register_by_beats", "needs a passive section (beats are how instances register)")
		}
	}

	out.Detector = mergeDetector(field, preset.Detector, d.Detector, s.Detector, p)
	out.Protection = mergeProtection(field, preset.Protection, d.Protection, s.Protection, p)
	out.Verdict = mergeVerdict(field, preset.Verdict, d.Verdict, s.Verdict, p)

	names := map[string]bool{}
	hasTarget := false
	for i, in := range s.Instances {
		inf := fmt.Sprintf("%s.instances[%d]", field, i)
		if !nameRE.MatchString(in.Name) {
			p.add(inf+".name", "%q is not a valid instance name (letters, digits, '.', '_', '-'; at most 128)", in.Name)
		}
		if names[in.Name] {
			p.add(inf+".name", "instance %q is declared twice", in.Name)
		}
		names[in.Name] = true
		if in.Target != "" {
			hasTarget = true
			if err := checkTarget(in.Target); err != nil {
				p.add(inf+".target", "%v", err)
			}
		}
		out.Instances = append(out.Instances, monitor.InstanceSpec{Name: in.Name, Target: in.Target, Zone: in.Zone, Labels: in.Labels})
	}
	for i, a := range s.Active {
		af := fmt.Sprintf("%s.active[%d]", field, i)
		m, ok := modules[a.Module]
		if !ok {
			p.add(af+".module", "no module named %q in modules", a.Module)
			continue
		}
		ps := m.spec
		ps.Interval = a.Interval.Or(preset.ProbeInterval)
		ps.Timeout = a.Timeout.Or(ps.Timeout)
		checkRange(p, af+".interval", ps.Interval, minInterval, maxInterval)
		if ps.Timeout >= ps.Interval {
			p.add(af+".timeout", "%s must be shorter than the interval %s, or probes would overlap", ps.Timeout, ps.Interval)
		}
		out.Active = append(out.Active, ps)
	}
	if len(s.Active) > 0 && !hasTarget {
		p.add(field+".active", "no instance has a target to probe")
	}
	if !passiveSet && len(s.Active) == 0 {
		p.add(field, "has neither passive (beats) nor active (probes): nothing would judge it")
	}
	return out
}

func checkRange(p *problems, field string, d, lo, hi time.Duration) {
	if d < lo || d > hi {
		p.add(field, "%s is outside %s..%s", d, lo, hi)
	}
}

// checkTarget accepts scheme://host:port[/path] for the probe protocols, or
// a bare host:port.
func checkTarget(t string) error {
	if !strings.Contains(t, "://") {
		if _, _, err := splitHostPort(t); err != nil {
			return fmt.Errorf("%q is not host:port or scheme://host:port/path", t)
		}
		return nil
	}
	u, err := url.Parse(t)
	if err != nil {
		return fmt.Errorf("%q: %v", t, err)
	}
	switch u.Scheme {
	case "http", "https", "grpc", "grpcs", "tcp", "tls", "udp", "dns":
	default:
		return fmt.Errorf("%q: unknown scheme %q (want http, https, grpc, grpcs, tcp, tls, udp or dns)", t, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", t)
	}
	return nil
}

func mergeDetector(field string, out monitor.DetectorSpec, d, s *Detector, p *problems) monitor.DetectorSpec {
	for _, l := range []struct {
		field string
		v     *Detector
	}{{"defaults.detector", d}, {field + ".detector", s}} {
		if l.v == nil {
			continue
		}
		if l.v.Type != "" {
			out.Type = l.v.Type
		}
		if l.v.Threshold != 0 {
			out.Threshold = l.v.Threshold
		}
		out.Floor = l.v.Floor.Or(out.Floor)
		out.Ceiling = l.v.Ceiling.Or(out.Ceiling)
		out.Timeout = l.v.Timeout.Or(out.Timeout)
		f := l.field
		switch out.Type {
		case "adaptive", "phi", "phi-exponential", "seedfix":
		case "fixed":
			if out.Timeout == 0 {
				p.add(f+".timeout", "type fixed needs a timeout")
			}
		default:
			p.add(f+".type", "unknown detector %q (want adaptive, phi, phi-exponential, fixed or seedfix)", out.Type)
		}
		if out.Threshold < 0 || out.Threshold > 100 {
			p.add(f+".threshold", "%g is outside 0..100", out.Threshold)
		}
		if out.Floor <= 0 || out.Ceiling <= out.Floor || out.Ceiling > maxInterval {
			p.add(f, "floor %s and ceiling %s must satisfy 0 < floor < ceiling <= %s", out.Floor, out.Ceiling, maxInterval)
		}
	}
	return out
}

func mergeProtection(field string, out monitor.ProtectionSpec, d, s *Protection, p *problems) monitor.ProtectionSpec {
	for _, l := range []struct {
		field string
		v     *Protection
	}{{"defaults.protection", d}, {field + ".protection", s}} {
		if l.v == nil {
			continue
		}
		f := l.field
		if l.v.Disabled != nil {
			out.Disabled = *l.v.Disabled
		}
		out.SuspectShare = l.v.SuspectShare.Or(out.SuspectShare)
		out.MaxEjection = l.v.MaxEjection.Or(out.MaxEjection)
		if l.v.MinGroup != nil {
			out.MinGroup = *l.v.MinGroup
		}
		out.Backoff = l.v.Backoff.Or(out.Backoff)
		out.BackoffMax = l.v.BackoffMax.Or(out.BackoffMax)
		if l.v.Overwhelm != 0 {
			out.Overwhelm = l.v.Overwhelm
		}
		if out.Disabled {
			continue // the rest does not matter while protection is off
		}
		if out.SuspectShare <= 0 {
			p.add(f+".suspect_share", "must be above 0 (or set disabled: true)")
		}
		if out.MinGroup < 1 {
			p.add(f+".min_group", "must be at least 1")
		}
		if out.Backoff <= 0 || out.BackoffMax < out.Backoff {
			p.add(f+".backoff", "backoff %s and backoff_max %s must satisfy 0 < backoff <= backoff_max", out.Backoff, out.BackoffMax)
		}
		if out.Overwhelm < 2 {
			p.add(f+".overwhelm", "%g is below 2: protection would not protect", out.Overwhelm)
		}
	}
	return out
}

func mergeVerdict(field string, out monitor.VerdictSpec, d, s *Verdict, p *problems) monitor.VerdictSpec {
	for _, l := range []struct {
		field string
		v     *Verdict
	}{{"defaults.verdict", d}, {field + ".verdict", s}} {
		if l.v == nil {
			continue
		}
		f := l.field
		out.DownAfter = l.v.DownAfter.Or(out.DownAfter)
		out.StartupGrace = l.v.StartupGrace.Or(out.StartupGrace)
		out.RemoveGrace = l.v.RemoveGrace.Or(out.RemoveGrace)
		out.ForgetAfter = l.v.ForgetAfter.Or(out.ForgetAfter)
		if l.v.RecoverAfter != nil {
			out.RecoverAfter = *l.v.RecoverAfter
		}
		if l.v.Retries != nil {
			out.Retries = *l.v.Retries
		}
		if fl := l.v.Flap; fl != nil {
			if fl.Disabled != nil {
				out.Flap.Disabled = *fl.Disabled
			}
			if fl.Penalty != 0 {
				out.Flap.Penalty = fl.Penalty
			}
			if fl.Suppress != 0 {
				out.Flap.Suppress = fl.Suppress
			}
			if fl.Reuse != 0 {
				out.Flap.Reuse = fl.Reuse
			}
			out.Flap.HalfLife = fl.HalfLife.Or(out.Flap.HalfLife)
			if !(out.Flap.Penalty > 0 && out.Flap.Reuse > 0 && out.Flap.Suppress > out.Flap.Reuse) {
				p.add(f+".flap", "need penalty > 0 and suppress > reuse > 0 (got %g, %g, %g)", out.Flap.Penalty, out.Flap.Suppress, out.Flap.Reuse)
			}
			checkRange(p, f+".flap.half_life", out.Flap.HalfLife, time.Second, maxInterval)
		}
		if out.DownAfter < 0 || out.DownAfter > maxInterval {
			p.add(f+".down_after", "%s is outside 0..%s", out.DownAfter, maxInterval)
		}
		if out.RecoverAfter < 1 || out.RecoverAfter > 100 {
			p.add(f+".recover_after", "%d is outside 1..100", out.RecoverAfter)
		}
		if out.Retries < 0 || out.Retries > 10 {
			p.add(f+".retries", "%d is outside 0..10", out.Retries)
		}
		if out.StartupGrace < 0 || out.RemoveGrace < 0 || out.ForgetAfter < 0 {
			p.add(f, "grace periods cannot be negative")
		}
	}
	return out
}
