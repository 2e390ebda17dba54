// Package archtest owns the architecture test: it lists every package of the
// module with `go list` and fails on any import between pulse packages that
// the layout table in ARCHITECTURE.md does not allow, on packages the table
// does not know, and on a detector package that imports net or starts
// goroutines (detectors are pure functions of history and time).
package archtest
