// Package embedetcd owns running a single-member etcd inside the process
// (go.etcd.io/etcd/server/v3/embed) with its logging silenced: for
// `pulse demo --cluster` and the cluster tests. Production clusters use a
// real etcd (docs/cluster.md).
package embedetcd
