// Package probing owns the active-probing comparison: many HTTPS targets
// probed once per second by pulse's prober (one probe.Prober per module:
// pooled connections, TLS session reuse, per-phase timings, conditions)
// against what hand-written checkers and many exporters do, a new
// http.Client and Transport per probe. Targets are TLS listeners in child
// processes that count handshakes; each prober runs in a child of its own
// so its CPU time is its alone.
package probing
