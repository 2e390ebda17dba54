package health

import (
	"time"

	"github.com/fb4b1dcc/pulse/status"
)

// Snapshot is an immutable view of the health state. Handlers and watchers
// read it without locks; a new one replaces it on every change.
type Snapshot struct {
	Seq      uint64        // increases with every published change
	Live     bool          // answer of /livez
	Ready    bool          // answer of /readyz and /healthz
	Draining bool          // Shutdown has started
	Status   status.Status // worst status over all checks
	Checks   []CheckState  // sorted by name

	groups map[string]bool // gRPC service name → serving

	// The plain 503 bodies of /livez and /readyz, rendered once when the
	// snapshot is published so that a failing probe allocates nothing per
	// request (AP-02: the unready answer is the one served under stress).
	liveBody, readyBody []byte
}

// CheckState is the latest known state of one check.
type CheckState struct {
	Name            string
	Status          status.Status
	Err             string        // last error, empty when healthy
	Latency         time.Duration // of the last completed run
	At              time.Time     // when the last result was recorded (monotonic)
	AffectsLiveness bool
	Groups          []string
	Runs            uint64 // completed runs
	Timeouts        uint64 // runs abandoned at their timeout
	Skipped         uint64 // scheduled runs skipped because an abandoned run was still in flight
	Panics          uint64 // runs that panicked
	InFlight        bool   // an abandoned run has not returned yet
	everOK          bool
}

// Serving reports whether the gRPC service name is serving, and whether the
// name is known. The empty name is the overall readiness.
func (s *Snapshot) Serving(service string) (serving, known bool) {
	if service == "" {
		return s.Ready, true
	}
	serving, known = s.groups[service]
	return serving, known
}

// Services lists the known gRPC service names (not including "") and whether
// each is serving.
func (s *Snapshot) Services() map[string]bool {
	m := make(map[string]bool, len(s.groups))
	for k, v := range s.groups {
		m[k] = v
	}
	return m
}

// Check returns the state of the named check.
func (s *Snapshot) Check(name string) (CheckState, bool) {
	for _, c := range s.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return CheckState{}, false
}

// build derives the verdicts from the check states. degradedOK says whether
// a degraded check still counts as ready.
func build(seq uint64, checks []CheckState, draining, degradedOK bool) *Snapshot {
	s := &Snapshot{Seq: seq, Live: true, Ready: !draining, Draining: draining, Checks: checks, groups: map[string]bool{}}
	worst := status.Healthy
	for _, c := range checks {
		worst = worst.Worse(c.Status)
		if c.AffectsLiveness && c.Status == status.Unhealthy {
			s.Live = false
		}
		ok := readyStatus(c, degradedOK)
		if !ok {
			s.Ready = false
		}
		for _, g := range c.Groups {
			prev, seen := s.groups[g]
			s.groups[g] = (!seen || prev) && ok && !draining
		}
	}
	if len(checks) == 0 {
		worst = status.Healthy
	}
	s.Status = worst
	return s
}

// readyStatus says whether one check allows readiness: it must have passed
// at least once, and its latest result must be healthy (or degraded when
// that is allowed).
func readyStatus(c CheckState, degradedOK bool) bool {
	if !c.everOK {
		return false
	}
	switch c.Status {
	case status.Healthy:
		return true
	case status.Degraded:
		return degradedOK
	}
	return false
}
