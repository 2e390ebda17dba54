// Command etcdserver runs the single-member etcd (server/v3/embed, logging
// silenced, data in a temporary directory) that the registry comparison
// measures against, speaking the report's child protocol on stdin/stdout:
// the first stdin line is its (empty) input, then every line asks for its
// memory and CPU figures; it stops when stdin closes. The report starts
// the same code by re-executing itself with PULSE_BENCH_ROLE=etcd-server;
// this command exists to run the server alone:
//
//	(echo '{}'; cat) | go -C bench run ./cmd/etcdserver
package main
