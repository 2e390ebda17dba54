// Package registry owns the liveness-registry comparison: etcd leases
// (server/v3/embed as its own process, client/v3 KeepAlive with one lease
// per instance and its registration key attached, TTL 3 s, from a load
// generator in another process) against pulse beats over UDP and gRPC
// (ingest and the monitor in one process, a multiplexing load generator in
// another). It measures sustained keep-alives (beats) per second, server
// CPU per keep-alive, heap and RSS per instance above idle, the time from
// a client's death to its removal being visible to a watcher, and the
// time until 10,000 simultaneous deaths are all visible; and, with
// 1,000,000 pulse instances registered, the rate of beats judged end to
// end.
package registry
