// Package sim owns pulse's deterministic failure-detector simulator: seeded
// generators of arrival traces (one named function per scenario, each with
// real crashes at random times), the runner that drives every detector of
// package detector over every trace with a threshold sweep, the QoS curves
// and goal checks built from the results, their Markdown and SVG rendering,
// and the reader for recorded traces (CSV). `pulse sim` is its command line.
//
// The simulator evaluates a detector exactly the way the monitor does: it
// calls Observe at each arrival and reads Deadline to learn when the
// instance would turn suspect; the judge's own pauses are fed to a
// detector.PauseLedger through Late, as the monitor's judge loop does.
package sim
