// Package heartbeat owns the sending end of passive heartbeats: Sender,
// which a service embeds (or `pulse beat` runs as a sidecar) to tell a
// pulse monitor it is alive and how healthy it is.
//
// A Sender starts at a random phase, adds jitter to every interval and
// schedules on the monotonic clock with one reused timer; a send never
// stalls the schedule. The interval, jitter and timeout change live when
// the monitor's ACK asks for it. Transports, one file each: UDP (signed
// beats, ACKs, retransmission with back-off inside the interval, RTT from
// ACK echoes), HTTP(S) (one pooled connection, TCP keepalive and HTTP/2
// PINGs from the interval, handshake time kept apart from answer time, one
// retry on a fresh connection when a reused one fails) and gRPC (one
// bidirectional Beat stream, keepalive from the interval, reconnect with
// back-off).
package heartbeat
