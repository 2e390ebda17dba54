// Package cluster owns pulse's cluster mode: several `pulse serve` nodes
// coordinated through etcd (docs/cluster.md).
//
//   - Membership: each node holds an etcd lease and announces itself under
//     /pulse/v1/members/<node-id> (zone and addresses); every node watches
//     the prefix.
//   - Ownership: rendezvous (HRW) hashing over the live members assigns each
//     instance to one node (Ring); only the owner judges and probes it.
//     Beats that reach another node are forwarded to the owner in batches
//     over the pulse.v1.Cluster gRPC service.
//   - Shared state: owners publish transitions (never beats) and the
//     current state of their instances to /pulse/v1/state/<service>/<instance>
//     under their lease; every node mirrors the others' into its monitor,
//     so any node's API, watch stream and local history serve the fleet.
//   - Multi-vantage verdicts: before an owner declares a probed instance
//     down, nodes in other zones probe it themselves (Confirm).
//   - Configuration: /pulse/v1/config holds pulse.yaml; every node validates
//     and applies it through the same path as a file reload.
//   - Failover: a dead node's lease expires, its instances move to the
//     survivors, which take them over in grace from the published state.
//   - etcd unavailable: ownership freezes at the last view, nodes keep
//     judging their shards, and reconcile when etcd returns.
//
// Node is the whole of it; the daemon wires a Node between the monitor,
// the gRPC server and etcd.
package cluster
