// Package healthio defines an analyzer for AP-02 (INC-2024-0117: blocking
// I/O amplification): an HTTP handler registered on a health-like path
// (/health, /healthz, /livez, /readyz, /ping, /status, /ready, /heartbeat…)
// whose body reaches blocking I/O — database/sql queries and pings, network
// dials and HTTP or gRPC calls, os/exec, and the context-taking methods of a
// few well-known data-store clients (etcd clientv3, go-redis, mongo-driver,
// pgx, sqlx) — directly or through calls to functions and methods of the
// same package. When the handler is built by another package's factory
// (health.NewHandler(func(ctx) …)), the functions handed to the factory are
// searched.
//
// A probe that waits on the database turns a slow database into failing
// probes everywhere at once: the orchestrator restarts healthy pods, load
// balancers drain them, and the probes themselves add load to the struggling
// dependency. Health answers must come from memory: run dependency checks in
// the background, each with its own interval and timeout, and serve the
// cached result and its age (pulse's health package does this).
//
// Registrations are calls named Handle, HandleFunc, Handler, HandlerFunc,
// Get/GET, Head/HEAD or Any (net/http, gorilla/mux, chi, gin, echo,
// httprouter…) with a constant health-like path. Work started with `go` or
// time.AfterFunc is background work and is not followed; calls through
// interfaces or function values cannot be followed statically.
package healthio
