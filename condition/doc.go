// Package condition owns the verdict language of active probes: CEL
// expressions (cel.dev/cel-go) over what a probe observed — status, headers,
// body, the body parsed as JSON, latency and the peer's TLS certificate —
// compiled and type-checked once when configuration loads, evaluated per probe
// under a cost limit.
//
// A Set has conditions for Healthy (all must hold) and, separately, rules for
// Degraded (a milder failure with its own reason, often taken from the body).
// Expect is the short sugar for the common cases; it compiles to the same CEL
// a person would write.
//
// Import rule: status, cel-go and the standard library only.
package condition
