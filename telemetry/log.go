package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// LogOptions configures NewLogger.
type LogOptions struct {
	Level  slog.Level
	Format string // json (default) or text
	// RepeatWindow: identical failure lines (same message, level and
	// identifying fields) within this window are counted instead of
	// written; the next one after it says how many were suppressed
	// (default 1 minute; negative disables).
	RepeatWindow time.Duration
}

// NewLogger returns pulse's logger: JSON or text, with trace_id and
// span_id added from the record's context, and repeated failures
// rate-limited.
func NewLogger(w io.Writer, o LogOptions) *slog.Logger {
	hopts := &slog.HandlerOptions{Level: o.Level}
	var h slog.Handler
	if strings.EqualFold(o.Format, "text") {
		h = slog.NewTextHandler(w, hopts)
	} else {
		h = slog.NewJSONHandler(w, hopts)
	}
	h = &traceHandler{h}
	if o.RepeatWindow >= 0 {
		win := o.RepeatWindow
		if win == 0 {
			win = time.Minute
		}
		h = NewRepeatLimiter(h, win)
	}
	return slog.New(h)
}

// traceHandler adds trace_id and span_id from the context's span, unless
// the record already has them (the monitor sets them from evidence).
type traceHandler struct{ slog.Handler }

func (h *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	if sc.IsValid() {
		has := false
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "trace_id" {
				has = true
				return false
			}
			return true
		})
		if !has {
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h *traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &traceHandler{h.Handler.WithAttrs(as)}
}
func (h *traceHandler) WithGroup(name string) slog.Handler {
	return &traceHandler{h.Handler.WithGroup(name)}
}

// RepeatLimiter is a slog.Handler that lets the first of a run of
// identical warning-or-worse records through and counts the rest until the
// window passes; the next one then carries repeated=N. Identity is the
// level, message and the identifying attributes (service, instance, check,
// module, error_class, peer_addr, zone, and a transition's from and to, so
// an instance's suspect line never hides its down line), so a dead fleet
// of many instances still logs each instance once per window, and a single
// dead instance probed every second logs once a minute instead of sixty
// times.
type RepeatLimiter struct {
	next   slog.Handler
	window time.Duration
	attrs  []slog.Attr // from WithAttrs, part of the identity
	state  *repeatState
}

type repeatState struct {
	mu   sync.Mutex
	seen map[string]*repeat
	now  func() time.Time
}

type repeat struct {
	first      time.Time
	suppressed int
}

// NewRepeatLimiter wraps next.
func NewRepeatLimiter(next slog.Handler, window time.Duration) *RepeatLimiter {
	return &RepeatLimiter{next: next, window: window, state: &repeatState{seen: map[string]*repeat{}, now: time.Now}}
}

func (h *RepeatLimiter) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

var identity = map[string]bool{"service": true, "instance": true, "check": true, "module": true, "error_class": true, "peer_addr": true, "zone": true,
	"from": true, "to": true}

func (h *RepeatLimiter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d|%s", r.Level, r.Message)
	add := func(a slog.Attr) bool {
		if identity[a.Key] {
			fmt.Fprintf(&b, "|%s=%s", a.Key, a.Value.String())
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	key := b.String()
	st := h.state
	st.mu.Lock()
	now := st.now()
	rep := st.seen[key]
	switch {
	case rep == nil:
		st.seen[key] = &repeat{first: now}
		if len(st.seen) > 100000 {
			// Bound the memory of the limiter itself: forget stale keys.
			for k, v := range st.seen {
				if now.Sub(v.first) > h.window {
					delete(st.seen, k)
				}
			}
		}
		st.mu.Unlock()
		return h.next.Handle(ctx, r)
	case now.Sub(rep.first) < h.window:
		rep.suppressed++
		st.mu.Unlock()
		return nil
	default:
		n := rep.suppressed
		rep.first, rep.suppressed = now, 0
		st.mu.Unlock()
		if n > 0 {
			r.AddAttrs(slog.Int("repeated", n), slog.String("repeated_within", h.window.String()))
		}
		return h.next.Handle(ctx, r)
	}
}

func (h *RepeatLimiter) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(as)
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *RepeatLimiter) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}
