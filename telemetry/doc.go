// Package telemetry owns how pulse explains itself: structured logs
// (log/slog, JSON by default) that carry the trace and span ids of the
// context they are written in and that rate-limit repeated identical
// failures, and the OpenTelemetry SDK set-up of the daemon (OTLP over gRPC
// or HTTP, or stdout). The monitor's Prometheus metrics are in
// telemetry/metrics; the library's opt-in collectors in health/healthmetrics
// and heartbeat/beatmetrics.
package telemetry
