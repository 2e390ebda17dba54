// Package daemon owns the wiring of `pulse serve` and `pulse demo`: it is
// the only place that knows every part (config and its watcher, ingest,
// the monitor with its scheduler and store, telemetry, the API, the
// dashboard, the monitor's own health) and the order they start and stop
// in. Stopping drains first: the monitor's own /readyz turns 503, then the
// listeners close, the monitor flushes the store and everything it started
// has exited.
package daemon
