// Package metrics owns the monitor's Prometheus instrumentation: it
// implements monitor.Hooks (observations per source, probe phases, beat
// RTT and inter-arrival, transitions, protection, capped ejections) and
// collectors that read the monitor's group counts, ingest's counters, the
// store's and the config watcher's at scrape time. Active and passive
// observations are separate series (AP-15); the combined verdict is its
// own gauge, without an instance label unless a service opts in.
package metrics
