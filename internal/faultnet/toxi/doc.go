// Package toxi owns the embedding of Shopify's toxiproxy (v2.12.0) for
// tests and the demo: a real TCP proxy in the same process whose faults
// (latency, jitter, blackhole, reset, bandwidth, slicer) are switched on and
// off from Go, without a separate toxiproxy server or its HTTP API.
package toxi
