// Package stats holds the few statistics the comparisons print:
// percentiles of samples and compact formatting of rates, sizes and
// durations.
package stats
