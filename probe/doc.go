// Package probe owns active health checks: one prober per protocol (http.go,
// grpc.go, tcp.go, tls.go, udp.go, dns.go), each returning a Result with a
// three-valued status, a reason, an error class and per-phase timings (DNS,
// connect, TLS, time to first byte, transfer).
//
// A Prober is built once per module (New) and probes many targets: it owns
// the pooled HTTP transport, one gRPC ClientConn per target and the compiled
// conditions, so repeated probes reuse connections and TLS sessions instead
// of paying a handshake each time (AP-05). A reused connection that stays
// silent gets a parallel attempt on a fresh connection (AP-07); every phase
// has a deadline (AP-11); bodies are judged by CEL conditions (AP-08); every
// probe is a span with per-phase children and W3C trace context on the wire
// (AP-17). Once is the one-shot convenience over New/Probe/Close.
//
// Import rule: status, clock, condition and the OpenTelemetry API only.
package probe
