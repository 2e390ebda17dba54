package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Event is one state transition of an instance, or a fleet-level event
// (protection on/off, config reload) when Instance is empty.
type Event struct {
	// Seq orders events; the monitor assigns it, strictly increasing, and
	// watchers resume from it (SSE Last-Event-ID). It starts at 1 and is at
	// most math.MaxInt64 (SQLite integers are signed).
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"` // wall time, for display and queries; required
	Service  string    `json:"service"`
	Instance string    `json:"instance,omitempty"` // empty for service- or zone-level events
	Zone     string    `json:"zone"`
	From     string    `json:"from,omitempty"` // instance state names: unknown, alive, suspect, down, degraded, protected, left
	To       string    `json:"to"`
	Reason   string    `json:"reason"`             // one human line: "phi=9.3 > 8; last beat 4.1s ago"
	Source   string    `json:"source"`             // passive, active, combined, protection, config, api
	TraceID  string    `json:"trace_id,omitempty"` // W3C trace id (32 hex) of the evidence, when known
}

// Instance is the persisted state of one instance: enough for a restarted
// monitor to resume judging without a down storm and to seed detectors.
type Instance struct {
	Service   string // required
	Instance  string // required
	Zone      string
	Labels    map[string]string // an empty map is loaded back as nil
	State     string
	Since     time.Time // when State began
	Reason    string
	LastBeat  time.Time // zero if never
	LastProbe time.Time // zero if never
	// Detector seed: the estimates the monitor had, so a restart does not
	// start from an empty window.
	MeanInterval time.Duration
	DevInterval  time.Duration
	RTT          time.Duration
	UpdatedAt    time.Time
}

// Key names an instance.
type Key struct{ Service, Instance string }

// Query selects events. Zero fields do not filter. Results are ordered by
// Seq ascending, or descending with Desc.
type Query struct {
	Service  string
	Instance string
	Since    time.Time // Time >= Since
	Until    time.Time // Time < Until
	AfterSeq uint64    // Seq > AfterSeq
	Limit    int       // 0 means the backend's default (1000); at most 10000
	Desc     bool
}

// Store is pulse's history. Implementations are safe for concurrent use.
//
// Times are stored with nanosecond precision and returned in UTC without a
// monotonic reading; a zero time.Time is returned as zero. Every method
// returns ErrClosed after Close, and the context's error when ctx ends
// first.
type Store interface {
	// Append stores events durably: when it returns nil, every event is on
	// stable storage and survives a crash (kill -9) of the process.
	//
	// A call is atomic: all of its events are stored or none. Events that
	// fail Event.Validate are rejected with an error wrapping ErrInvalid,
	// and a Seq that is already stored (or repeated within the call) with
	// one wrapping ErrDuplicateSeq; in both cases nothing of the call is
	// stored. If Append returns ctx's error, nothing of the call is stored
	// either, so the caller may retry the same events.
	Append(ctx context.Context, events []Event) error
	// Events returns events matching q.
	Events(ctx context.Context, q Query) ([]Event, error)
	// LastSeq returns the highest Seq ever appended (0 if none), so a
	// restarted monitor continues the sequence. Prune does not lower it:
	// a Seq is never handed out twice even after its event expired.
	LastSeq(ctx context.Context) (uint64, error)
	// SaveInstances inserts or replaces instance snapshots, atomically.
	// Instances that fail Instance.Validate are rejected (ErrInvalid) and
	// nothing of the call is saved.
	SaveInstances(ctx context.Context, instances []Instance) error
	// DeleteInstances removes snapshots (an instance that left). Deleting
	// a key that is not saved is not an error.
	DeleteInstances(ctx context.Context, keys []Key) error
	// LoadInstances returns every saved snapshot, ordered by Service then
	// Instance.
	LoadInstances(ctx context.Context) ([]Instance, error)
	// Prune deletes events with Time before the given time and returns how
	// many.
	Prune(ctx context.Context, before time.Time) (int64, error)
	// Close flushes pending appends and releases the store. It is
	// idempotent; calls after the first return nil.
	Close() error
}

// Errors returned by stores; test with errors.Is.
var (
	// ErrClosed is returned by operations on a closed store.
	ErrClosed = errors.New("store: closed")
	// ErrInvalid is returned for an event or instance that cannot be stored.
	ErrInvalid = errors.New("store: invalid record")
	// ErrDuplicateSeq is returned by Append for a Seq that is already stored.
	ErrDuplicateSeq = errors.New("store: event seq already stored")
)

// Query limits.
const (
	DefaultLimit = 1000
	MaxLimit     = 10000
)

// EffectiveLimit returns the limit of q after defaults and caps.
func (q Query) EffectiveLimit() int {
	switch {
	case q.Limit <= 0:
		return DefaultLimit
	case q.Limit > MaxLimit:
		return MaxLimit
	}
	return q.Limit
}

// TimeInRange reports whether t is zero or representable as int64 Unix
// nanoseconds (about the years 1678 to 2262), the form every backend stores.
func TimeInRange(t time.Time) bool {
	return t.IsZero() || (!t.Before(time.Unix(0, math.MinInt64)) && !t.After(time.Unix(0, math.MaxInt64)))
}

// Validate reports why e cannot be stored, as an error wrapping ErrInvalid,
// or nil.
func (e Event) Validate() error {
	switch {
	case e.Seq == 0:
		return fmt.Errorf("%w: event has Seq 0; sequences start at 1 (continue from LastSeq()+1)", ErrInvalid)
	case e.Seq > math.MaxInt64:
		return fmt.Errorf("%w: event Seq %d is above the maximum %d", ErrInvalid, e.Seq, int64(math.MaxInt64))
	case e.Time.IsZero():
		return fmt.Errorf("%w: event seq %d has no Time; set it to the wall time of the transition", ErrInvalid, e.Seq)
	case !TimeInRange(e.Time):
		return fmt.Errorf("%w: event seq %d Time %s is outside the storable range (years 1678 to 2262)", ErrInvalid, e.Seq, e.Time)
	}
	return nil
}

// Validate reports why in cannot be stored, as an error wrapping
// ErrInvalid, or nil.
func (in Instance) Validate() error {
	if in.Service == "" || in.Instance == "" {
		return fmt.Errorf("%w: instance snapshot needs both Service and Instance (got %q/%q)", ErrInvalid, in.Service, in.Instance)
	}
	for _, f := range [...]struct {
		name string
		t    time.Time
	}{{"Since", in.Since}, {"LastBeat", in.LastBeat}, {"LastProbe", in.LastProbe}, {"UpdatedAt", in.UpdatedAt}} {
		if !TimeInRange(f.t) {
			return fmt.Errorf("%w: instance %s/%s %s %s is outside the storable range (years 1678 to 2262)", ErrInvalid, in.Service, in.Instance, f.name, f.t)
		}
	}
	return nil
}
