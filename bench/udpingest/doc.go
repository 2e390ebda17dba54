// Package udpingest owns the UDP beat ingest comparison: pulse's ingest
// Receiver (decode, HMAC verify, intern, replay window, queue, sink, signed
// ACK back) against the physical limit of the same socket read by a raw
// ReadBatch loop that only counts, and by a plain ReadFrom loop. The
// receivers run in one child process (so allocations and CPU are theirs
// alone) and the sender, which blasts pre-signed distinct beats with
// sendmmsg and no flow control, in another; what a receiver cannot keep up
// with, the kernel drops, so each is measured at its capacity.
package udpingest
