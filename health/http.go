package health

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/fb4b1dcc/pulse/status"
)

// Register installs /livez, /readyz and /healthz (an alias of /readyz, for
// the probes and load balancers that only know that name) on mux.
func (h *Health) Register(mux *http.ServeMux) {
	mux.Handle("/livez", h.LiveHandler())
	mux.Handle("/readyz", h.ReadyHandler())
	mux.Handle("/healthz", h.ReadyHandler())
}

// Handler returns a handler serving the three endpoints.
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	h.Register(mux)
	return mux
}

// LiveHandler answers liveness: 200 "ok" unless a check registered with
// AffectsLiveness is unhealthy.
func (h *Health) LiveHandler() http.Handler { return endpoint{h, false} }

// ReadyHandler answers readiness: 200 "ok" once every check has passed and
// while none fails and the process is not draining; 503 otherwise.
func (h *Health) ReadyHandler() http.Handler { return endpoint{h, true} }

type endpoint struct {
	h     *Health
	ready bool
}

func (e endpoint) name() string {
	if e.ready {
		return "readyz"
	}
	return "livez"
}

// ServeHTTP answers from the current snapshot. The common request (no query,
// no JSON) takes no lock, does no I/O beyond the response and allocates
// nothing of its own.
func (e endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := e.h
	s := h.snap.Load()
	hdr := w.Header()
	hdr["Cache-Control"] = h.noStore
	hdr["X-Content-Type-Options"] = h.noSniff
	if r.URL.RawQuery == "" && !acceptsJSON(r) {
		ok := s.Live
		if e.ready {
			ok = s.Ready
		}
		hdr["Content-Type"] = h.ctPlain
		if ok {
			w.WriteHeader(http.StatusOK)
			w.Write(h.okBody)
			return
		}
		body := s.liveBody
		if e.ready {
			body = s.readyBody
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write(body)
		return
	}
	e.detailed(w, r, s)
}

func acceptsJSON(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return a != "" && strings.Contains(a, "application/json")
}

// detailed serves ?verbose, ?exclude= and JSON answers.
func (e endpoint) detailed(w http.ResponseWriter, r *http.Request, s *Snapshot) {
	q := r.URL.Query()
	_, verbose := q["verbose"]
	exclude := map[string]bool{}
	for _, x := range q["exclude"] {
		for n := range strings.SplitSeq(x, ",") {
			exclude[n] = true
		}
	}
	ok := e.ok(s, exclude)
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	if acceptsJSON(r) {
		w.Header()["Content-Type"] = e.h.ctJSON
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(e.jsonBody(s, exclude, ok))
		return
	}
	w.Header()["Content-Type"] = e.h.ctPlain
	w.WriteHeader(code)
	if ok && !verbose {
		w.Write(e.h.okBody)
		return
	}
	w.Write(e.text(s, exclude, verbose))
}

// relevant says whether a check takes part in this endpoint's verdict.
func (e endpoint) relevant(c CheckState) bool { return e.ready || c.AffectsLiveness }

func (e endpoint) ok(s *Snapshot, exclude map[string]bool) bool {
	if len(exclude) == 0 {
		if e.ready {
			return s.Ready
		}
		return s.Live
	}
	if e.ready && s.Draining {
		return false
	}
	for _, c := range s.Checks {
		if exclude[c.Name] || !e.relevant(c) {
			continue
		}
		if e.ready && !readyStatus(c, e.h.opts.DegradedIsReady) {
			return false
		}
		if !e.ready && c.Status == status.Unhealthy {
			return false
		}
	}
	return true
}

func (e endpoint) checkOK(c CheckState) bool {
	if e.ready {
		return readyStatus(c, e.h.opts.DegradedIsReady)
	}
	return c.Status != status.Unhealthy
}

// text renders the Kubernetes-style listing: one line per check, then a
// verdict line. Errors are shown only with ?verbose, as they may name
// internal hosts.
func (e endpoint) text(s *Snapshot, exclude map[string]bool, verbose bool) []byte {
	var b strings.Builder
	now := e.h.clk.Now()
	if e.ready {
		if s.Draining {
			b.WriteString("[-]shutdown draining\n")
		} else if verbose {
			b.WriteString("[+]shutdown ok\n")
		}
	}
	for _, c := range s.Checks {
		if !e.relevant(c) {
			continue
		}
		if exclude[c.Name] {
			fmt.Fprintf(&b, "[+]%s excluded: ok\n", c.Name)
			continue
		}
		ok := e.checkOK(c)
		if ok && !verbose {
			continue
		}
		mark := "[+]"
		if !ok {
			mark = "[-]"
		}
		fmt.Fprintf(&b, "%s%s %s", mark, c.Name, c.Status)
		if verbose {
			if c.Err != "" {
				fmt.Fprintf(&b, ": %s", c.Err)
			}
			if c.Runs > 0 {
				fmt.Fprintf(&b, " (age %s, latency %s", now.Sub(c.At).Round(time.Millisecond), c.Latency.Round(time.Microsecond))
			} else {
				b.WriteString(" (no result yet")
			}
			if c.Timeouts > 0 {
				fmt.Fprintf(&b, ", timeouts %d", c.Timeouts)
			}
			if c.InFlight {
				b.WriteString(", abandoned run still in flight")
			}
			b.WriteString(")")
		} else if !ok {
			b.WriteString(": reason withheld, see ?verbose")
		}
		b.WriteString("\n")
	}
	if e.ok(s, exclude) {
		fmt.Fprintf(&b, "%s check passed\n", e.name())
	} else {
		fmt.Fprintf(&b, "%s check failed\n", e.name())
	}
	return []byte(b.String())
}

type jsonCheck struct {
	Name           string  `json:"name"`
	Status         string  `json:"status"`
	Affects        string  `json:"affects"`
	AgeSeconds     float64 `json:"age_seconds"`
	LatencySeconds float64 `json:"latency_seconds"`
	Error          string  `json:"error,omitempty"`
	Runs           uint64  `json:"runs"`
	Timeouts       uint64  `json:"timeouts"`
	Skipped        uint64  `json:"skipped"`
	InFlight       bool    `json:"in_flight"`
	Excluded       bool    `json:"excluded,omitempty"`
}

type jsonBody struct {
	Endpoint string      `json:"endpoint"`
	OK       bool        `json:"ok"`
	Status   string      `json:"status"`
	Draining bool        `json:"draining"`
	Checks   []jsonCheck `json:"checks"`
}

func (e endpoint) jsonBody(s *Snapshot, exclude map[string]bool, ok bool) jsonBody {
	now := e.h.clk.Now()
	out := jsonBody{Endpoint: e.name(), OK: ok, Status: s.Status.String(), Draining: s.Draining, Checks: []jsonCheck{}}
	for _, c := range s.Checks {
		if !e.relevant(c) {
			continue
		}
		affects := "readiness"
		if c.AffectsLiveness {
			affects = "liveness"
		}
		jc := jsonCheck{Name: c.Name, Status: c.Status.String(), Affects: affects, Error: c.Err,
			LatencySeconds: c.Latency.Seconds(), Runs: c.Runs, Timeouts: c.Timeouts, Skipped: c.Skipped,
			InFlight: c.InFlight, Excluded: exclude[c.Name]}
		if c.Runs > 0 {
			jc.AgeSeconds = math.Round(now.Sub(c.At).Seconds()*1000) / 1000
		}
		out.Checks = append(out.Checks, jc)
	}
	return out
}
