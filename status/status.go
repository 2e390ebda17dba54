package status

import (
	"fmt"
	"time"
)

// Status is the health of one check, probe, beat or instance.
//
// The zero value is Unknown: nothing has been observed yet. Callers must not
// treat Unknown as healthy; readiness waits until a real answer arrives.
type Status uint8

const (
	Unknown   Status = iota // no answer yet
	Healthy                 // answers and meets every condition
	Degraded                // answers but fails a degraded condition: keep alive, take out of traffic
	Unhealthy               // fails, or does not answer
)

var statusNames = [...]string{"unknown", "healthy", "degraded", "unhealthy"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Valid reports whether s is one of the defined values.
func (s Status) Valid() bool { return s <= Unhealthy }

// Worse returns the worse of s and o, ranking Unhealthy > Degraded >
// Unknown > Healthy. Unknown outranks Healthy so that a check that has not
// answered yet keeps an aggregate from claiming health it has not shown.
func (s Status) Worse(o Status) Status {
	if rank(o) > rank(s) {
		return o
	}
	return s
}

func rank(s Status) int {
	switch s {
	case Healthy:
		return 0
	case Unknown:
		return 1
	case Degraded:
		return 2
	default:
		return 3
	}
}

// MarshalText encodes the status as its lower-case name.
func (s Status) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("status: invalid value %d", uint8(s))
	}
	return []byte(statusNames[s]), nil
}

// UnmarshalText parses a lower-case status name.
func (s *Status) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Parse turns a status name ("healthy", "degraded", "unhealthy", "unknown")
// into a Status.
func Parse(name string) (Status, error) {
	for i, n := range statusNames {
		if n == name {
			return Status(i), nil
		}
	}
	return Unknown, fmt.Errorf("status: unknown status %q (want healthy, degraded, unhealthy or unknown)", name)
}

// Phases are the timings of the steps of one network exchange. A zero field
// means the step did not happen (a reused connection has no DNS, Connect or
// TLS phase).
type Phases struct {
	DNS      time.Duration `json:"dns_ns"`
	Connect  time.Duration `json:"connect_ns"`
	TLS      time.Duration `json:"tls_ns"`
	TTFB     time.Duration `json:"ttfb_ns"`     // request written → first response byte
	Transfer time.Duration `json:"transfer_ns"` // first byte → body read
}

// Result is the outcome of one check, probe or beat exchange.
type Result struct {
	Status  Status
	Latency time.Duration // whole exchange, handshakes included
	Err     error         // nil when Status is Healthy
	Class   ErrorClass    // grouping for logs and metrics; empty when healthy
	Reason  string        // one human line: why this Status
	Phases  Phases
}

// OK reports whether the result is Healthy.
func (r Result) OK() bool { return r.Status == Healthy }
