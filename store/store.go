package store

import (
	"context"
	"errors"
	"time"
)

// Event is one state transition of an instance, or a fleet-level event
// (protection on/off, config reload) when Instance is empty.
type Event struct {
	// Seq orders events; the monitor assigns it, strictly increasing, and
	// watchers resume from it (SSE Last-Event-ID).
	Seq      uint64
	Time     time.Time // wall time, for display and queries
	Service  string
	Instance string // empty for service- or zone-level events
	Zone     string
	From     string // instance state names: unknown, alive, suspect, down, degraded, protected, left
	To       string
	Reason   string // one human line: "phi=9.3 > 8; last beat 4.1s ago"
	Source   string // passive, active, combined, protection, config, api
	TraceID  string // W3C trace id (32 hex) of the evidence, when known
}

// Instance is the persisted state of one instance: enough for a restarted
// monitor to resume judging without a down storm and to seed detectors.
type Instance struct {
	Service   string
	Instance  string
	Zone      string
	Labels    map[string]string
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
type Store interface {
	// Append stores events durably: when it returns nil, every event is on
	// stable storage and survives a crash (kill -9) of the process.
	Append(ctx context.Context, events []Event) error
	// Events returns events matching q.
	Events(ctx context.Context, q Query) ([]Event, error)
	// LastSeq returns the highest stored Seq (0 if none), so a restarted
	// monitor continues the sequence.
	LastSeq(ctx context.Context) (uint64, error)
	// SaveInstances inserts or replaces instance snapshots.
	SaveInstances(ctx context.Context, instances []Instance) error
	// DeleteInstances removes snapshots (an instance that left).
	DeleteInstances(ctx context.Context, keys []Key) error
	// LoadInstances returns every saved snapshot.
	LoadInstances(ctx context.Context) ([]Instance, error)
	// Prune deletes events older than before and returns how many.
	Prune(ctx context.Context, before time.Time) (int64, error)
	// Close flushes and releases the store. It is idempotent.
	Close() error
}

// ErrClosed is returned by operations on a closed store.
var ErrClosed = errors.New("store: closed")

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
