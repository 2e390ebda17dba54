// Package detection owns the failure-detection comparison between pulse
// and hashicorp/memberlist (SWIM gossip): crash detection time, false
// verdicts under packet loss and after a member is cut off, and the CPU
// and bytes on the wire each costs per member.
//
// Each cluster runs in a child process of its own (roles "detect"), so its
// CPU time is its own. Memberlist runs with DefaultLANConfig on loopback
// with its own NetTransport, wrapped (faultTransport) so that the same
// loss hits its UDP packets and its TCP connection attempts (the TCP
// fallback ping would otherwise rescue every lost UDP probe on loopback).
// Pulse runs the real daemon (`pulse serve` in process, LAN profile) with
// real heartbeat senders whose UDP beats and ACKs cross a faultnet relay
// with the same loss in both directions.
package detection
