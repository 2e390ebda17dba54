package ingest

import (
	"net/netip"
	"time"

	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// Source tells passive observations (beats the instance sent) from active
// ones (probes the monitor ran); metrics and verdicts keep them apart.
type Source uint8

const (
	SourceUnknown Source = iota
	Passive
	Active
)

func (s Source) String() string {
	switch s {
	case Passive:
		return "passive"
	case Active:
		return "active"
	}
	return "unknown"
}

// Observation is one accepted beat.
type Observation struct {
	Service, Instance string // interned: the same string values for every beat of an instance
	Source            Source // always Passive from ingest
	Transport         wire.Transport
	Epoch             uint64 // sender restart epoch
	Seq               uint64
	// SentAt is the sender's monotonic clock at the transmission that
	// arrived, from the sender's own origin: comparable only with other
	// beats of the same epoch (their difference is the send spacing).
	SentAt time.Duration
	// ReceivedAt is the receiver's clock when the datagram or request was
	// read; it carries a monotonic reading, so inter-arrival times computed
	// from it ignore wall-clock steps.
	ReceivedAt time.Time
	// RTT is the sender's own latest round-trip (UDP: smoothed ACK RTT;
	// HTTP/gRPC: answer time without handshakes). Zero when unknown.
	RTT         time.Duration
	Interval    time.Duration // the interval the sender says it is using
	Status      status.Status // the sender's own health
	Reason      wire.Reason
	Attempt     uint8             // 0: first transmission arrived; n: the n-th retransmission did
	TraceParent wire.TraceContext // the sender's beat span, if it sent one
	Peer        netip.AddrPort    // where the beat came from
}

// Sink receives observations. ObserveBatch is called from one goroutine at
// a time; the slice is reused after it returns, so a Sink that keeps
// observations must copy them. A Sink should be quick: while it runs,
// beats queue up (and overflow once the queue is full).
type Sink interface {
	ObserveBatch(obs []Observation)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(obs []Observation)

// ObserveBatch calls f.
func (f SinkFunc) ObserveBatch(obs []Observation) { f(obs) }
