// Command report runs pulse's comparison benchmarks and writes their
// section of docs/benchmarks.md (between the "BEGIN report" and "END
// report" markers) plus SVG plots under docs/benchmarks/.
//
//	go -C bench run ./cmd/report            # full run, ≤ 30 minutes
//	go -C bench run ./cmd/report --quick    # smoke run, ≤ 3 minutes
//
// The report re-executes itself for the parts that must run in their own
// process (clusters, servers, load generators): the environment variable
// PULSE_BENCH_ROLE selects the part.
package main
