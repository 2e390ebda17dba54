package a

import (
	"context"
	"database/sql"
	"net/http"
	"os/exec"
	"sync/atomic"
	"time"
)

var db *sql.DB

// badHeartbeat is the seed's INC-2024-0117 handler: every probe queries MySQL.
func badHeartbeat(w http.ResponseWriter, r *http.Request) {
	var alive bool
	db.QueryRow("SELECT 1 FROM health_check WHERE service = ?", "api").Scan(&alive)
	w.WriteHeader(http.StatusOK)
}

func pingDB(ctx context.Context) error { return db.PingContext(ctx) }

func checkDeps(ctx context.Context) error { return pingDB(ctx) }

type depHandler struct{ client *http.Client }

func (h *depHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://dep/healthz", nil)
	if _, err := h.client.Do(req); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
}

func execProbe(w http.ResponseWriter, r *http.Request) {
	_ = exec.CommandContext(r.Context(), "pg_isready").Run()
}

func statusFactory(db *sql.DB) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = db.ExecContext(r.Context(), "SELECT 1")
	}
}

const readyPath = "/readyz"

func register(mux *http.ServeMux) {
	http.HandleFunc("/heartbeat", badHeartbeat)                                     // want `health handler for "/heartbeat" calls blocking I/O \(\*database/sql.DB\).QueryRow`
	mux.HandleFunc("GET "+readyPath, func(w http.ResponseWriter, r *http.Request) { // want `health handler for "GET /readyz" calls blocking I/O \(\*database/sql.DB\).PingContext via checkDeps → pingDB`
		if err := checkDeps(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	mux.Handle("/healthz", &depHandler{client: http.DefaultClient}) // want `health handler for "/healthz" calls blocking I/O \(\*net/http.Client\).Do`
	mux.Handle("/livez", http.HandlerFunc(execProbe))               // want `health handler for "/livez" calls blocking I/O \(\*os/exec.Cmd\).Run`
	mux.HandleFunc("/status", statusFactory(db))                    // want `health handler for "/status" calls blocking I/O \(\*database/sql.DB\).ExecContext: a slow`
}

// A gin/echo-style router.
type Context struct{ Writer http.ResponseWriter }
type Router struct{}

func (Router) GET(path string, h func(*Context)) {}

func registerGin(r Router) {
	r.GET("/ping", func(c *Context) { // want `health handler for "/ping" calls blocking I/O \(\*database/sql.DB\).Ping`
		if db.Ping() != nil {
			c.Writer.WriteHeader(http.StatusServiceUnavailable)
		}
	})
}

// --- must not be flagged ---

// snapshot is pulse's idiom: checks run in the background and publish an
// immutable result that the handler reads without locks or I/O.
type snapshot struct{ ok bool }

type server struct{ state atomic.Pointer[snapshot] }

func (s *server) livez(w http.ResponseWriter, r *http.Request) {
	if st := s.state.Load(); st == nil || !st.ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
}

func (s *server) runChecks(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			s.state.Store(&snapshot{ok: db.PingContext(ctx) == nil})
			cancel()
		}
	}
}

// Checker is dynamic: a call through it cannot be followed statically.
type Checker interface{ Check(context.Context) error }

func (s *server) register(mux *http.ServeMux, c Checker) {
	mux.HandleFunc("/livez", s.livez)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		go func() { _ = db.Ping() }() // background: not the handler's latency
		time.AfterFunc(time.Second, func() { _ = db.Ping() })
		_ = c.Check(r.Context())
	})
	// Not a health path: business handlers may query the database.
	mux.HandleFunc("/orders", func(w http.ResponseWriter, r *http.Request) {
		_, _ = db.QueryContext(r.Context(), "SELECT * FROM orders")
	})
}

func registerIgnored(mux *http.ServeMux) {
	//pulselint:ignore healthio deep check endpoint for humans; probes use /livez
	mux.HandleFunc("/health", badHeartbeat)
}
