package monitor

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// eventRing keeps the most recent events in memory so watchers can catch up
// without the store, and resume after a short disconnect.
type eventRing struct {
	buf   []Event
	first uint64 // the oldest sequence number ever put (0: none yet)
}

func newEventRing(n int) *eventRing { return &eventRing{buf: make([]Event, n)} }

func (r *eventRing) put(e Event) {
	if r.first == 0 {
		r.first = e.Seq
	}
	r.buf[e.Seq%uint64(len(r.buf))] = e
}

// oldest is the oldest sequence number still held (0 if none).
func (r *eventRing) oldest(last uint64) uint64 {
	n := uint64(len(r.buf))
	if r.first == 0 {
		return 0
	}
	if last >= n && last-n+1 > r.first {
		return last - n + 1
	}
	return r.first
}

// since appends the events after seq up to last, or reports that some of
// them are not in memory (overwritten, or from before a restart).
func (r *eventRing) since(seq, last uint64, dst []Event, limit int) ([]Event, bool) {
	if seq >= last {
		return dst, true
	}
	if old := r.oldest(last); old == 0 || seq+1 < old {
		return dst, false
	}
	for s := seq + 1; s <= last && len(dst) < limit; s++ {
		dst = append(dst, r.buf[s%uint64(len(r.buf))])
	}
	return dst, true
}

// emitLocked assigns the next sequence number, records the event in the
// ring, queues it for the store, logs it and wakes watchers. It never
// blocks: a full store queue counts a drop.
func (m *Monitor) emitLocked(e Event, now time.Duration) {
	m.emitWithEvidence(e, now, evidenceRef{})
}

// evidenceRef is what a transition rests on: the trace of the beat or
// probe that tipped it, and where it came from.
type evidenceRef struct {
	traceID [16]byte
	spanID  [8]byte
	peer    string
	latency time.Duration
	class   string
}

func (m *Monitor) emitWithEvidence(e Event, now time.Duration, ev evidenceRef) {
	m.seq++
	e.Seq = m.seq
	e.Time = m.wall(now)
	if e.Time.IsZero() {
		e.Time = m.origin.Round(0)
	}
	m.ring.put(e)
	if !m.closed {
		select {
		case m.persistQ <- e:
		default:
			m.hooks.EventsDropped(1)
		}
	}
	m.later(func() { m.traceAndLog(e, ev) })
	for w := range m.watchers {
		w.notify()
	}
}

// LastSeq returns the sequence number of the newest event.
func (m *Monitor) LastSeq() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seq
}

// ErrGap is returned when a watcher asks for events older than the memory
// buffer holds; it must read them from the store (or re-list).
var ErrGap = errors.New("monitor: events no longer in memory")

// ErrClosed is returned by a watcher once the monitor stopped.
var ErrClosed = errors.New("monitor: closed")

// Watcher follows events. Its channel has a buffer of one and only says
// "there is news": a slow reader never blocks the monitor, and catches up
// by reading every event after its cursor with Next.
type Watcher struct {
	m      *Monitor
	ch     chan struct{}
	cursor uint64
	closed bool
	once   sync.Once
}

// Watch returns a watcher positioned after sequence number after (0: from
// the oldest event in memory; LastSeq(): only new events).
func (m *Monitor) Watch(after uint64) *Watcher {
	w := &Watcher{m: m, ch: make(chan struct{}, 1), cursor: after}
	m.mu.Lock()
	if m.closed {
		w.closeLocked()
	} else {
		m.watchers[w] = struct{}{}
		if m.seq > after {
			w.notify()
		}
	}
	m.mu.Unlock()
	return w
}

// C is signalled when events newer than the cursor may exist; it is closed
// when the monitor stops.
func (w *Watcher) C() <-chan struct{} { return w.ch }

// notify is called with the monitor's lock held.
func (w *Watcher) notify() {
	if w.closed {
		return
	}
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// Next appends up to limit events after the cursor to dst and advances the
// cursor. It returns ErrGap if the cursor fell out of memory (the cursor is
// then moved to the oldest event still held; the caller decides whether to
// fill the gap from the store) and ErrClosed after the monitor stopped and
// every event was read.
func (w *Watcher) Next(dst []Event, limit int) ([]Event, error) {
	m := w.m
	m.mu.Lock()
	defer m.mu.Unlock()
	out, ok := m.ring.since(w.cursor, m.seq, dst, limit)
	if !ok {
		if old := m.ring.oldest(m.seq); old > 0 {
			w.cursor = old - 1
		} else {
			w.cursor = m.seq
		}
		return dst, ErrGap
	}
	if n := len(out) - len(dst); n > 0 {
		w.cursor = out[len(out)-1].Seq
	}
	if w.cursor < m.seq {
		w.notify()
	} else if w.closed {
		return out, ErrClosed
	}
	return out, nil
}

// Cursor returns the sequence number of the last event delivered.
func (w *Watcher) Cursor() uint64 {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	return w.cursor
}

// Close stops the watcher.
func (w *Watcher) Close() {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	delete(w.m.watchers, w)
	w.closeLocked()
}

func (w *Watcher) closeLocked() {
	w.once.Do(func() {
		w.closed = true
		close(w.ch)
	})
}

// CloseWatchers ends every watch (their channels close after the events
// they have not read yet), so streams that follow the monitor finish
// before their servers shut down. New watches still work.
func (m *Monitor) CloseWatchers() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for w := range m.watchers {
		w.closeLocked()
	}
	clear(m.watchers)
}

// Events returns up to limit events after seq from memory.
func (m *Monitor) Events(after uint64, limit int) ([]Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out, ok := m.ring.since(after, m.seq, nil, limit)
	if !ok {
		return nil, ErrGap
	}
	return out, nil
}

// traceAndLog records a transition as a span (child of the evidence's
// span, so a trace shows beat or probe, then verdict) and a log line that
// carries its ids. It runs after the monitor's lock is released.
func (m *Monitor) traceAndLog(e Event, ev evidenceRef) {
	ctx := context.Background()
	if ev.traceID != ([16]byte{}) && ev.spanID != ([8]byte{}) {
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: ev.traceID, SpanID: ev.spanID,
			TraceFlags: trace.FlagsSampled, Remote: true})
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	_, span := m.tracer.Start(ctx, "pulse.verdict", trace.WithTimestamp(e.Time), trace.WithSpanKind(trace.SpanKindInternal))
	// Attributes only for a span that is recorded: a fleet registering a
	// million instances at once should not build them for a no-op tracer.
	if span.IsRecording() {
		span.SetAttributes(attribute.String("pulse.service", e.Service), attribute.String("pulse.instance", e.Instance),
			attribute.String("pulse.zone", e.Zone), attribute.String("pulse.from", e.From), attribute.String("pulse.to", e.To),
			attribute.String("pulse.reason", e.Reason), attribute.String("pulse.source", e.Source), attribute.Int64("pulse.seq", int64(e.Seq)))
	}
	span.End(trace.WithTimestamp(e.Time))
	sc := span.SpanContext()
	traceID, spanID := e.TraceID, ""
	if sc.IsValid() {
		traceID, spanID = sc.TraceID().String(), sc.SpanID().String()
	}
	lvl := slog.LevelInfo
	if e.To == Down.String() || e.To == Suspect.String() || e.To == "protection_on" || e.To == "isolated" {
		lvl = slog.LevelWarn
	}
	msg := "transition"
	if e.Instance == "" {
		msg = "fleet event"
	}
	m.log.LogAttrs(ctx, lvl, msg, slog.String("trace_id", traceID), slog.String("span_id", spanID),
		slog.String("peer_addr", ev.peer), slog.String("service", e.Service), slog.String("instance", e.Instance),
		slog.String("zone", e.Zone), slog.String("from", e.From), slog.String("to", e.To), slog.String("source", e.Source),
		slog.Duration("latency", ev.latency), slog.String("error_class", ev.class), slog.String("reason", e.Reason),
		slog.Uint64("seq", e.Seq))
}
