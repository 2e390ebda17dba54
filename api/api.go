package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/store"
)

// Options configures the API.
type Options struct {
	// Store serves /api/v1/events and fills watch gaps; nil serves events
	// from the monitor's memory only.
	Store store.Store
	// Tokens, when non-empty, are required as "Authorization: Bearer ..."
	// on every read and control endpoint. They can be replaced at run time
	// with SetTokens.
	Tokens [][]byte
	// Beat handles POST /api/v1/beat (ingest's HTTP endpoint, which does
	// its own per-service authentication).
	Beat http.Handler
	// KeepAlive is the interval of SSE comment lines that keep idle
	// proxies from closing a watch (default 15s).
	KeepAlive time.Duration
	Logger    *slog.Logger
}

// API serves the monitor over HTTP.
type API struct {
	m      *monitor.Monitor
	opts   Options
	tokens atomic.Pointer[[][]byte]
	mux    *http.ServeMux
}

// New returns the API; mount Handler on the HTTP server.
func New(m *monitor.Monitor, opts Options) *API {
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 15 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &API{m: m, opts: opts, mux: http.NewServeMux()}
	a.SetTokens(opts.Tokens)
	routes := []struct {
		methods []string
		path    string
		h       []http.HandlerFunc
	}{
		{[]string{"GET"}, "/api/v1/services", []http.HandlerFunc{a.listServices}},
		{[]string{"GET"}, "/api/v1/services/{service}", []http.HandlerFunc{a.getService}},
		{[]string{"GET"}, "/api/v1/services/{service}/instances", []http.HandlerFunc{a.listInstances}},
		{[]string{"GET", "DELETE"}, "/api/v1/services/{service}/instances/{instance}", []http.HandlerFunc{a.getInstance, a.deregister}},
		{[]string{"GET"}, "/api/v1/events", []http.HandlerFunc{a.events}},
		{[]string{"GET"}, "/api/v1/watch", []http.HandlerFunc{a.watch}},
		{[]string{"GET"}, "/api/v1/status", []http.HandlerFunc{a.status}},
	}
	if opts.Beat != nil {
		routes = append(routes, struct {
			methods []string
			path    string
			h       []http.HandlerFunc
		}{[]string{"POST"}, "/api/v1/beat", []http.HandlerFunc{opts.Beat.ServeHTTP}})
	}
	for _, rt := range routes {
		for i, m := range rt.methods {
			h := rt.h[i]
			if rt.path != "/api/v1/beat" {
				h = a.auth(h) // beats carry per-service tokens, checked by ingest
			}
			a.mux.HandleFunc(m+" "+rt.path, h)
		}
		allowed := strings.Join(rt.methods, ", ")
		a.mux.HandleFunc(rt.path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allowed)
			writeError(w, http.StatusMethodNotAllowed, "method not allowed", r.Method+" "+r.URL.Path+": use "+allowed)
		})
	}
	a.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint", r.Method+" "+r.URL.Path+" is not part of the API; see docs/api.md")
	})
	return a
}

// Handler returns the API's handler (routes under /api/).
func (a *API) Handler() http.Handler { return a.mux }

// SetTokens replaces the accepted bearer tokens (config reload).
func (a *API) SetTokens(tokens [][]byte) {
	t := append([][]byte(nil), tokens...)
	a.tokens.Store(&t)
}

// AuthRequired reports whether the API asks for a token.
func (a *API) AuthRequired() bool { return len(*a.tokens.Load()) > 0 }

// auth checks the bearer token in constant time.
func (a *API) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		toks := *a.tokens.Load()
		if len(toks) > 0 {
			got := bearer(r)
			ok := 0
			for _, t := range toks {
				ok |= subtle.ConstantTimeCompare([]byte(got), t)
			}
			if ok != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="pulse"`)
				writeError(w, http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer <token> with one of api.tokens")
				return
			}
		}
		h(w, r)
	}
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	// EventSource cannot set headers: the dashboard passes the token as a
	// query parameter on the watch stream only.
	if r.URL.Path == "/api/v1/watch" {
		return r.URL.Query().Get("access_token")
	}
	return ""
}

// Error is the JSON body of every error answer.
type Error struct {
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(Error{Error: msg, Detail: detail})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func notFoundOr500(w http.ResponseWriter, err error) {
	if errors.Is(err, monitor.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not found", err.Error())
		return
	}
	writeError(w, http.StatusInternalServerError, "internal error", err.Error())
}

func (a *API) listServices(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{"services": a.m.Services()})
}

func (a *API) getService(w http.ResponseWriter, r *http.Request) {
	v, err := a.m.Service(r.PathValue("service"))
	if err != nil {
		notFoundOr500(w, err)
		return
	}
	writeJSON(w, v)
}

// parseStates parses "alive,degraded".
func parseStates(s string) ([]monitor.State, error) {
	if s == "" {
		return nil, nil
	}
	var out []monitor.State
	for _, p := range strings.Split(s, ",") {
		st, err := monitor.ParseState(strings.TrimSpace(p))
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s=%q: want a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

// InstanceList is the answer of the instances endpoint.
type InstanceList struct {
	Service   string                 `json:"service"`
	Total     int                    `json:"total"`
	Instances []monitor.InstanceView `json:"instances"`
}

func (a *API) listInstances(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	states, err := parseStates(q.Get("state"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad state filter", err.Error())
		return
	}
	limit, err := intParam(r, "limit", 0, 0, 100000)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad limit", err.Error())
		return
	}
	offset, err := intParam(r, "offset", 0, 0, 1<<30)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad offset", err.Error())
		return
	}
	f := monitor.Filter{States: states, Zone: q.Get("zone"), Search: q.Get("q"), Limit: limit, Offset: offset}
	svc := r.PathValue("service")
	list, total, err := a.m.Instances(svc, f)
	if err != nil {
		notFoundOr500(w, err)
		return
	}
	writeJSON(w, InstanceList{Service: svc, Total: total, Instances: list})
}

func (a *API) getInstance(w http.ResponseWriter, r *http.Request) {
	v, err := a.m.Instance(r.PathValue("service"), r.PathValue("instance"))
	if err != nil {
		notFoundOr500(w, err)
		return
	}
	writeJSON(w, v)
}

func (a *API) deregister(w http.ResponseWriter, r *http.Request) {
	reason := r.URL.Query().Get("reason")
	if reason == "" {
		reason = "deregistered through the API"
	}
	if err := a.m.Deregister(r.PathValue("service"), r.PathValue("instance"), reason); err != nil {
		notFoundOr500(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Status is the answer of /api/v1/status: the monitor's own state.
type Status struct {
	Isolated        bool   `json:"isolated"`
	IsolationReason string `json:"isolation_reason,omitempty"`
	LastSeq         uint64 `json:"last_seq"`
	ConfigHash      string `json:"config_hash"`
	Services        int    `json:"services"`
	AuthRequired    bool   `json:"auth_required"`
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	iso, why := a.m.Isolated()
	st := Status{Isolated: iso, IsolationReason: why, LastSeq: a.m.LastSeq(), Services: len(a.m.Services()), AuthRequired: a.AuthRequired()}
	if sp := a.m.Spec(); sp != nil {
		st.ConfigHash = sp.Hash
	}
	writeJSON(w, st)
}

// parseTime accepts RFC 3339 or a Go duration meaning "that long ago".
func parseTime(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2026-11-25T10:00:00Z) nor a duration ago (15m)", v)
	}
	return t, nil
}

// EventList is the answer of the events endpoint.
type EventList struct {
	Events []store.Event `json:"events"`
	// Next is the Seq to pass as after= for the following page (0: none).
	Next uint64 `json:"next,omitempty"`
}

func (a *API) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	now := time.Now()
	since, err := parseTime(q.Get("since"), now)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad since", err.Error())
		return
	}
	until, err := parseTime(q.Get("until"), now)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad until", err.Error())
		return
	}
	limit, err := intParam(r, "limit", 100, 1, store.MaxLimit)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad limit", err.Error())
		return
	}
	var after uint64
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, "bad after", fmt.Sprintf("after=%q: want an event sequence number", v))
			return
		}
	}
	order := q.Get("order")
	if order != "" && order != "asc" && order != "desc" {
		writeError(w, http.StatusBadRequest, "bad order", "order is asc or desc")
		return
	}
	sq := store.Query{Service: q.Get("service"), Instance: q.Get("instance"), Since: since, Until: until,
		AfterSeq: after, Limit: limit, Desc: order == "desc"}
	evs, err := a.queryEvents(r.Context(), sq)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "history unavailable", err.Error())
		return
	}
	out := EventList{Events: evs}
	if out.Events == nil {
		out.Events = []store.Event{}
	}
	if len(evs) == limit && !sq.Desc {
		out.Next = evs[len(evs)-1].Seq
	}
	writeJSON(w, out)
}

// queryEvents reads history from the store, or the monitor's memory.
func (a *API) queryEvents(ctx context.Context, q store.Query) ([]store.Event, error) {
	if a.opts.Store != nil {
		return a.opts.Store.Events(ctx, q)
	}
	all, err := a.m.Events(q.AfterSeq, 1<<20)
	if err != nil && !errors.Is(err, monitor.ErrGap) {
		return nil, err
	}
	var out []store.Event
	for _, e := range all {
		if matchEvent(e, q) {
			out = append(out, e)
		}
	}
	if q.Desc {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	if len(out) > q.EffectiveLimit() {
		out = out[:q.EffectiveLimit()]
	}
	return out, nil
}

func matchEvent(e store.Event, q store.Query) bool {
	return (q.Service == "" || e.Service == q.Service) && (q.Instance == "" || e.Instance == q.Instance) &&
		(q.Since.IsZero() || !e.Time.Before(q.Since)) && (q.Until.IsZero() || e.Time.Before(q.Until)) &&
		e.Seq > q.AfterSeq
}
