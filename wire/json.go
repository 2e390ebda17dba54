package wire

import (
	"time"

	"github.com/fb4b1dcc/pulse/status"
)

// BeatPath is the HTTP endpoint beats are POSTed to.
const BeatPath = "/api/v1/beat"

// BeatJSON is the body of POST /api/v1/beat. The bearer token goes in the
// Authorization header and the trace context in the traceparent header.
// Epoch and sent_at_ns are strings because they exceed the 2^53 range that
// JSON numbers keep exactly in many languages.
type BeatJSON struct {
	Service    string        `json:"service"`
	Instance   string        `json:"instance"`
	Epoch      uint64        `json:"epoch,string"`
	Seq        uint64        `json:"seq"`
	SentAtNS   int64         `json:"sent_at_ns,string"`
	Status     status.Status `json:"status"`
	Reason     Reason        `json:"reason,omitempty"`
	IntervalMS uint32        `json:"interval_ms"`
	RTTMicros  uint32        `json:"rtt_us,omitempty"`
	Attempt    uint8         `json:"attempt,omitempty"`
}

// AckJSON is the 200 answer to a beat (and the shape of a gRPC BeatAck).
// Zero directive fields mean "keep what you have".
type AckJSON struct {
	Code       string `json:"code"` // "accepted" or "duplicate"
	Epoch      uint64 `json:"epoch,string"`
	Seq        uint64 `json:"seq"`
	SentAtNS   int64  `json:"sent_at_ns,string"`
	IntervalMS uint32 `json:"interval_ms,omitempty"`
	JitterMS   uint32 `json:"jitter_ms,omitempty"`
	TimeoutMS  uint32 `json:"timeout_ms,omitempty"`
}

// ErrorJSON is the body of a 4xx/5xx answer.
type ErrorJSON struct {
	Error  string `json:"error"`  // what went wrong and what to do
	Reason string `json:"reason"` // malformed, auth, replay, overflow, limit, ...
}

// DurMS converts a duration to whole milliseconds for the wire, saturating
// at the uint32 range.
func DurMS(d time.Duration) uint32 { return durMS(d) }
