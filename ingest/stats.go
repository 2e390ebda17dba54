package ingest

import (
	"math/bits"
	"sync/atomic"

	"github.com/fb4b1dcc/pulse/wire"
)

// DropReason says why a beat was not observed.
type DropReason uint8

const (
	DropMalformed DropReason = iota // does not decode
	DropOversized                   // longer than the protocol allows
	DropAuth                        // unknown service or key, bad tag or token
	DropReplay                      // older epoch, or seq behind the replay window
	DropDuplicate                   // seen before (retransmission or copy): ACKed, not observed again
	DropOverflow                    // the queue to the sink was full: not ACKed, the sender retries
	DropLimit                       // new instance, but the instance table is full
	numDropReasons
)

var dropNames = [...]string{"malformed", "oversized", "auth", "replay", "duplicate", "overflow", "limit"}

func (r DropReason) String() string {
	if int(r) < len(dropNames) {
		return dropNames[r]
	}
	return "unknown"
}

// DropReasons lists every reason, for pre-creating metric series.
func DropReasons() []DropReason {
	out := make([]DropReason, numDropReasons)
	for i := range out {
		out[i] = DropReason(i)
	}
	return out
}

// BatchBuckets is the number of batch-size histogram buckets: bucket i
// counts batches of 2^i ≤ size < 2^(i+1) (the last bucket is open).
const BatchBuckets = 11

// Stats is a snapshot of a Receiver's counters. Counters only grow.
type Stats struct {
	Received   [4]uint64 // datagrams/requests read, by wire.Transport
	Accepted   [4]uint64 // observations queued, by wire.Transport
	Dropped    [numDropReasons]uint64
	QueueDepth int
	QueueCap   int
	// ReadBatches counts UDP reads; ReadBatchSizes their sizes (log2 buckets).
	ReadBatches    uint64
	ReadBatchSizes [BatchBuckets]uint64
	// SinkBatches counts ObserveBatch calls; SinkBatchSizes their sizes.
	SinkBatches    uint64
	SinkBatchSizes [BatchBuckets]uint64
	AcksSent       uint64
	AckErrors      uint64
	ReadErrors     uint64
	Panics         uint64 // recovered panics (sink or handler); each is a bug to fix
	Instances      int
	Swept          uint64 // instances forgotten after IdleTTL
}

// Drops returns the count for one reason.
func (s Stats) Drops(r DropReason) uint64 { return s.Dropped[r] }

// TotalReceived sums Received over transports.
func (s Stats) TotalReceived() uint64 { return s.Received[1] + s.Received[2] + s.Received[3] }

// TotalAccepted sums Accepted over transports.
func (s Stats) TotalAccepted() uint64 { return s.Accepted[1] + s.Accepted[2] + s.Accepted[3] }

type counters struct {
	received, accepted [4]atomic.Uint64
	dropped            [numDropReasons]atomic.Uint64
	readBatches        atomic.Uint64
	readSizes          [BatchBuckets]atomic.Uint64
	sinkBatches        atomic.Uint64
	sinkSizes          [BatchBuckets]atomic.Uint64
	acks, ackErrors    atomic.Uint64
	readErrors         atomic.Uint64
	panics             atomic.Uint64
	swept              atomic.Uint64
}

func bucket(n int) int {
	if n <= 0 {
		return 0
	}
	return min(bits.Len(uint(n))-1, BatchBuckets-1)
}

// local accumulates one read batch's counts so the shared atomics are
// touched once per batch, not once per beat.
type local struct {
	received, accepted uint64
	dropped            [numDropReasons]uint64
	acks               uint64
}

func (c *counters) flush(t wire.Transport, l *local) {
	if l.received > 0 {
		c.received[t].Add(l.received)
	}
	if l.accepted > 0 {
		c.accepted[t].Add(l.accepted)
	}
	for i, n := range l.dropped {
		if n > 0 {
			c.dropped[i].Add(n)
		}
	}
	if l.acks > 0 {
		c.acks.Add(l.acks)
	}
	*l = local{}
}
