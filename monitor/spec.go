package monitor

import (
	"time"

	"github.com/fb4b1dcc/pulse/probe"
)

// Spec is everything the monitor judges by. It arrives through one door,
// Monitor.Apply, from the config file, a reload, or (in cluster mode) etcd.
// A Spec is immutable once applied.
type Spec struct {
	Services []ServiceSpec
	// Anchors are the monitor's own connectivity check targets (host:port
	// for TCP, or URLs): when most fail, the monitor presumes the fault is
	// its own and stops issuing down verdicts.
	Anchors        []string
	AnchorInterval time.Duration
	// Retention of history in the store.
	Retention time.Duration
	// Hash identifies the configuration (shown in metrics and events).
	Hash string
}

// ServiceSpec describes one service.
type ServiceSpec struct {
	Name               string
	RegisterByBeats    bool
	Instances          []InstanceSpec
	Passive            PassiveSpec
	Active             []ProbeSpec
	Detector           DetectorSpec
	Protection         ProtectionSpec
	Verdict            VerdictSpec
	PerInstanceMetrics bool
}

// InstanceSpec is a statically declared instance.
type InstanceSpec struct {
	Name   string
	Target string // what active probes address; empty: passive only
	Zone   string
	Labels map[string]string
}

// PassiveSpec configures heartbeats.
type PassiveSpec struct {
	Enabled  bool
	Interval time.Duration // told to senders in ACKs
	Jitter   time.Duration
	// Keys are HMAC keys for UDP beats by key id; Tokens are bearer tokens
	// for HTTP and gRPC beats. Beats are always authenticated.
	Keys   map[uint16][]byte
	Tokens [][]byte
}

// DetectorSpec chooses and tunes a failure detector.
type DetectorSpec struct {
	Type      string // adaptive (default), phi, phi-exponential, fixed, seedfix
	Threshold float64
	Floor     time.Duration
	Ceiling   time.Duration
	Timeout   time.Duration // fixed
}

// ProtectionSpec configures protection against correlated failure.
type ProtectionSpec struct {
	Disabled     bool
	SuspectShare float64 // share of a zone/service suspect at once that triggers protection
	MinGroup     int     // smallest zone/service protection applies to
	MaxEjection  float64 // share of a service that may be down at once
	Backoff      time.Duration
	BackoffMax   time.Duration
	Overwhelm    float64 // silence multiple beyond the zone's that still means down
}

// VerdictSpec tunes the state machine.
type VerdictSpec struct {
	DownAfter    time.Duration
	RecoverAfter int
	Retries      int
	StartupGrace time.Duration
	RemoveGrace  time.Duration
	// ForgetAfter: an instance registered by its beats (not declared in the
	// config) that has been down this long is forgotten (0: never).
	ForgetAfter time.Duration
	Flap        FlapSpec
}

// FlapSpec configures flap damping.
type FlapSpec struct {
	Disabled bool
	Penalty  float64
	Suppress float64
	Reuse    float64
	HalfLife time.Duration
}

// ProbeSpec is one active probe module run against every instance of a
// service that has a target.
type ProbeSpec struct {
	Name     string // module name from the config
	Module   probe.Module
	Interval time.Duration
	Timeout  time.Duration
}
