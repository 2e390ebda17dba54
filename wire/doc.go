// Package wire owns pulse's heartbeat protocol: the versioned binary format
// of UDP beats and ACKs (encode, decode, HMAC-SHA256 authentication with
// rotating key ids), the per-instance replay window with sender restart
// epochs, the W3C trace context a beat may carry, and the JSON shapes of the
// HTTP beat endpoint. docs/protocol.md is the normative description; this
// package is its reference implementation.
//
// Decoding never panics, never allocates and never reads outside the packet:
// a decoded Beat's Service and Instance alias the packet buffer.
package wire
