package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/store"
)

// ParseLastEventID parses the SSE Last-Event-ID (an event sequence
// number). It accepts only a decimal uint64 of at most 20 digits, so a
// hostile header cannot make the server do more than parse it.
func ParseLastEventID(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 20 {
		return 0, fmt.Errorf("Last-Event-ID %q: want an event sequence number", truncate(s, 32))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("Last-Event-ID %q: want an event sequence number", truncate(s, 32))
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("Last-Event-ID %q: out of range", truncate(s, 32))
	}
	return n, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// watch streams events as Server-Sent Events. Each event's id is its
// sequence number, so a client that reconnects with Last-Event-ID (browsers
// do so by themselves) resumes without losing one: from memory, or from
// the store when it was away longer than memory holds. A client that stops
// reading only stalls its own stream: the monitor notifies watchers
// without blocking, and writes here have a deadline.
func (a *API) watch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after := a.m.LastSeq()
	id := r.Header.Get("Last-Event-ID")
	if id == "" {
		id = q.Get("after")
	}
	if id != "" {
		n, err := ParseLastEventID(id)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad Last-Event-ID", err.Error())
			return
		}
		after = n
	}
	service := q.Get("service")
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(format string, args ...any) error {
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, format, args...); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := send("retry: 2000\n: watching events after %d\n\n", after); err != nil {
		return
	}

	wt := a.m.Watch(after)
	defer wt.Close()
	keep := time.NewTicker(a.opts.KeepAlive)
	defer keep.Stop()
	buf := make([]store.Event, 0, 256)
	last := after
	emit := func(evs []store.Event) error {
		for _, e := range evs {
			if e.Seq <= last {
				continue
			}
			last = e.Seq
			if service != "" && e.Service != service {
				continue
			}
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if err := send("id: %d\nevent: %s\ndata: %s\n\n", e.Seq, eventType(e), b); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		evs, err := wt.Next(buf[:0], 256)
		switch {
		case errors.Is(err, monitor.ErrGap):
			if err := a.fillGap(r.Context(), &last, wt.Cursor(), emit); err != nil {
				send("event: reset\ndata: {\"reason\":%q}\n\n", err.Error())
				return
			}
			continue
		case errors.Is(err, monitor.ErrClosed):
			emit(evs)
			send("event: shutdown\ndata: {}\n\n")
			return
		}
		if err := emit(evs); err != nil {
			return
		}
		if len(evs) == cap(buf) {
			continue // more waiting
		}
		select {
		case <-r.Context().Done():
			return
		case _, ok := <-wt.C():
			if !ok {
				emit(nil)
				send("event: shutdown\ndata: {}\n\n")
				return
			}
		case <-keep.C:
			if err := send(": keepalive %d\n\n", last); err != nil {
				return
			}
		}
	}
}

// fillGap sends the events between last and upTo from the store.
func (a *API) fillGap(ctx context.Context, last *uint64, upTo uint64, emit func([]store.Event) error) error {
	if a.opts.Store == nil {
		return fmt.Errorf("events after %d are no longer in memory and there is no store; re-list the state", *last)
	}
	for *last < upTo {
		evs, err := a.opts.Store.Events(ctx, store.Query{AfterSeq: *last, Limit: 1000})
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			*last = upTo // not stored (dropped under overload): skip ahead
			return nil
		}
		if err := emit(evs); err != nil {
			return err
		}
	}
	return nil
}

// eventType names the SSE event: transition for instance state changes,
// else the event's source (protection, config).
func eventType(e store.Event) string {
	if e.Instance != "" {
		return "transition"
	}
	if e.Source == "" {
		return "notice"
	}
	return e.Source
}
