// Package status owns the vocabulary every other pulse package speaks: the
// three-valued health Status (plus Unknown before the first answer), the
// Result of one check, probe or beat, its per-phase timings, and the small set
// of error classes (timeout, refused, tls, dns, condition, protocol) that logs
// and metrics group failures by.
//
// It imports nothing from pulse so that every layer can depend on it.
package status
