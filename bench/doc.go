// Package bench is the root of pulse's comparison benchmarks: a module of
// its own (so memberlist, etcd and the other baselines stay out of pulse's
// go.mod) that measures pulse against what users would pick instead, on the
// same machine in the same run. `go -C bench run ./cmd/report` runs every
// comparison and regenerates its section of docs/benchmarks.md; each
// comparison lives in its own package (detection, registry, udpingest,
// healthep, probing, qos).
package bench
