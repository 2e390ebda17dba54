// Package ingest owns the receiving end of passive heartbeats: batched UDP
// reads with batched, signed ACKs carrying the monitor's current interval,
// the HTTP (POST /api/v1/beat) and gRPC (pulse.v1.Monitor/Beat) beat
// endpoints, authentication (HMAC keys for UDP, bearer tokens for HTTP and
// gRPC), replay protection and dedupe. Every accepted beat becomes one
// Observation, handed in batches to a Sink from a bounded queue that never
// blocks a reader: what does not fit is counted as overflow and not ACKed,
// so the sender retries.
//
// The UDP path allocates nothing per beat once an instance has been seen:
// ids are interned in a bounded table, and only after the beat has
// authenticated, so unauthenticated traffic cannot grow memory.
package ingest
