// Package demo owns `pulse demo`: a monitor on embedded defaults plus a
// simulated fleet in the same process over real loopback sockets (3
// services × 3 zones, about 300 instances; passive UDP beats through
// fault-injecting relays and active HTTP probes of real servers) and a
// script of faults that replays the seed's incidents, with a live summary
// and a scorecard at the end.
package demo
