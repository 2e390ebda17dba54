// Package faultnet owns the network faults pulse's tests and demo inject:
// Relay, a seeded UDP relay that loses packets (independently and in
// bursts), delays them with jitter, duplicates and reorders them, each
// direction on its own. TCP faults live in the toxi subpackage (embedded
// toxiproxy).
package faultnet
