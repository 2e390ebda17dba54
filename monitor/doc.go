// Package monitor owns the judging of a fleet: the registry of services and
// instances, the verdict engine that turns observations (passive beats from
// ingest, active results from probes it schedules) into states with
// reasons, protection against correlated failure, and the watch fan-out of
// transition events.
//
// Data flows one way: observation → detector (one per instance and source)
// → verdict → registry, store, hooks and watchers. Configuration enters
// through one door, Apply(Spec).
//
// States: unknown → alive ⇄ suspect → down, plus degraded (answers but
// fails a condition, or is held out for flapping: out of the healthy set,
// not killed) and protected (suspect while protection holds: kept in the
// healthy set, flagged).
package monitor
