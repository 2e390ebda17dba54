package monitor

import (
	"time"

	"github.com/fb4b1dcc/pulse/probe"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// Hooks lets telemetry observe the monitor without the monitor knowing
// about metrics libraries. ForService is called once per service when a
// spec is applied; the returned ServiceHooks are called on the hot path, so
// they must be cheap and must not block (pre-resolve label values).
type Hooks interface {
	ForService(service string) ServiceHooks
	// Protection reports a protection change for a zone ("" for the whole
	// service) with its reason.
	Protection(service, zone string, active bool, reason string)
	// EjectionCapped counts a down verdict held back by the ejection cap.
	EjectionCapped(service string)
	// EventsDropped counts events the store could not keep up with.
	EventsDropped(n int)
	// StoreAppend reports one batch write to the store.
	StoreAppend(d time.Duration, events int, err error)
}

// ServiceHooks receives one service's observations and transitions.
type ServiceHooks interface {
	// Beat is one accepted passive observation; interarrival is the time
	// since the instance's previous beat (0 for the first).
	Beat(transport wire.Transport, rtt, interarrival time.Duration, traceID [16]byte)
	// BeatStatus counts a beat by the status its sender reported.
	BeatStatus(transport wire.Transport, st status.Status)
	// Probe is one active observation.
	Probe(module string, r *probe.Result)
	// Transition is a state change with the coarse class of its reason.
	Transition(from, to State, reasonClass string)
}

type nopHooks struct{}

func (nopHooks) ForService(string) ServiceHooks          { return nopServiceHooks{} }
func (nopHooks) Protection(string, string, bool, string) {}
func (nopHooks) EjectionCapped(string)                   {}
func (nopHooks) EventsDropped(int)                       {}
func (nopHooks) StoreAppend(time.Duration, int, error)   {}

type nopServiceHooks struct{}

func (nopServiceHooks) Beat(wire.Transport, time.Duration, time.Duration, [16]byte) {}
func (nopServiceHooks) BeatStatus(wire.Transport, status.Status)                    {}
func (nopServiceHooks) Probe(string, *probe.Result)                                 {}
func (nopServiceHooks) Transition(State, State, string)                             {}
