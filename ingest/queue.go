package ingest

import (
	"sync"
	"sync/atomic"
)

// queue is a bounded ring of observations between readers and the sink.
// Readers reserve room before accepting a batch of beats, so a beat is
// either queued or counted as overflow before its replay window is touched
// or its ACK written; a full queue never blocks a reader.
type queue struct {
	mu       sync.Mutex
	buf      []Observation
	head, n  int
	reserved int
	wake     chan struct{}
	depth    atomic.Int64
}

func newQueue(size int) *queue {
	return &queue{buf: make([]Observation, size), wake: make(chan struct{}, 1)}
}

// reserve claims room for up to k observations and returns how many it got.
func (q *queue) reserve(k int) int {
	q.mu.Lock()
	r := min(k, len(q.buf)-q.n-q.reserved)
	q.reserved += r
	q.mu.Unlock()
	return r
}

// commit appends obs (len(obs) <= r) and releases the reservation of r.
func (q *queue) commit(obs []Observation, r int) {
	q.mu.Lock()
	tail := (q.head + q.n) % len(q.buf)
	c := copy(q.buf[tail:], obs)
	copy(q.buf, obs[c:])
	q.n += len(obs)
	q.reserved -= r
	q.depth.Store(int64(q.n))
	q.mu.Unlock()
	if len(obs) > 0 {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// pop moves up to cap(dst) observations into dst[:0] and clears their
// slots so the ring does not keep strings alive.
func (q *queue) pop(dst []Observation) []Observation {
	q.mu.Lock()
	m := min(q.n, cap(dst))
	dst = dst[:m]
	end := q.head + m
	if end <= len(q.buf) {
		copy(dst, q.buf[q.head:end])
		clear(q.buf[q.head:end])
	} else {
		c := copy(dst, q.buf[q.head:])
		clear(q.buf[q.head:])
		copy(dst[c:], q.buf[:end-len(q.buf)])
		clear(q.buf[:end-len(q.buf)])
	}
	q.head = end % len(q.buf)
	q.n -= m
	q.depth.Store(int64(q.n))
	q.mu.Unlock()
	return dst
}
