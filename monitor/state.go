package monitor

import (
	"fmt"

	"github.com/fb4b1dcc/pulse/store"
)

// State is an instance's verdict.
type State uint8

const (
	Unknown   State = iota // registered, no evidence yet
	Alive                  // every configured source is satisfied
	Suspect                // a source failed; not yet confirmed
	Down                   // confirmed failed: out of the healthy set
	Degraded               // answers but fails a condition, or held out for flapping
	Protected              // suspect while protection holds: kept in the healthy set
	Left                   // deregistered or removed from the configuration
	numStates
)

var stateNames = [numStates]string{"unknown", "alive", "suspect", "down", "degraded", "protected", "left"}

func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseState parses a state name.
func ParseState(name string) (State, error) {
	for i, n := range stateNames {
		if n == name {
			return State(i), nil
		}
	}
	return Unknown, fmt.Errorf("unknown state %q (want one of unknown, alive, suspect, down, degraded, protected, left)", name)
}

// States lists every state, in order.
func States() []State {
	out := make([]State, 0, numStates)
	for s := State(0); s < numStates; s++ {
		out = append(out, s)
	}
	return out
}

// Healthy reports whether the state keeps the instance in the healthy
// (traffic) set: alive, and protected (presumed a victim of a network or
// monitor fault).
func (s State) Healthy() bool { return s == Alive || s == Protected }

// Event is one transition; the monitor assigns Seq. It is the store's type,
// so events pass to history without copying.
type Event = store.Event
