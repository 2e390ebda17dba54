package probe

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/fb4b1dcc/pulse/status"
)

// traceContext is the W3C propagator; the probe injects traceparent itself
// so the library does not depend on the program's global propagator.
var traceContext propagation.TraceContext

// startSpan opens the probe's span.
func (b *base) startSpan(ctx context.Context, target string) (context.Context, trace.Span) {
	ctx, span := b.tracer.Start(ctx, b.spanName, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() { // attributes cost allocations; skip them for the no-op tracer
		span.SetAttributes(
			attribute.String("pulse.probe.kind", string(b.kind)),
			attribute.String("pulse.probe.target", target),
		)
	}
	return ctx, span
}

// endSpan records the phases as child spans (with their real start and end
// times), the outcome as attributes and status, and ends the span.
func (b *base) endSpan(ctx context.Context, span trace.Span, r *Result, recs ...*recorder) {
	if sc := span.SpanContext(); sc.IsValid() {
		r.TraceID, r.SpanID = sc.TraceID().String(), sc.SpanID().String()
	}
	if !span.IsRecording() {
		span.End()
		return
	}
	for i, rec := range recs {
		if rec == nil {
			continue
		}
		b.phaseSpans(ctx, rec, i)
	}
	attrs := []attribute.KeyValue{
		attribute.String("pulse.probe.status", r.Status.String()),
		attribute.Int64("pulse.probe.latency_us", r.Latency.Microseconds()),
		attribute.Bool("pulse.probe.reused", r.Reused),
		attribute.Bool("pulse.probe.retried", r.Retried),
	}
	if r.Peer != "" {
		attrs = append(attrs, attribute.String("network.peer.address", r.Peer))
	}
	if r.HTTPStatus != 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", r.HTTPStatus))
	}
	if r.GRPCStatus != "" {
		attrs = append(attrs, attribute.String("pulse.probe.grpc_status", r.GRPCStatus))
	}
	if r.Class != status.ClassNone {
		attrs = append(attrs, attribute.String("error.type", string(r.Class)))
	}
	span.SetAttributes(attrs...)
	switch r.Status {
	case status.Healthy:
		span.SetStatus(codes.Ok, "")
	case status.Degraded:
		span.SetStatus(codes.Unset, r.Reason)
	default:
		span.SetStatus(codes.Error, r.Reason)
	}
	span.End()
}

// phaseSpans emits one child span per completed phase of an attempt.
func (b *base) phaseSpans(ctx context.Context, rec *recorder, attempt int) {
	rec.mu.Lock()
	type ph struct {
		name       string
		start, end time.Time
	}
	phs := []ph{
		{"dns", rec.dnsStart, rec.dnsEnd},
		{"connect", rec.connStart, rec.connEnd},
		{"tls", rec.tlsStart, rec.tlsEnd},
		{"ttfb", rec.sentLocked(), rec.firstByte},
		{"transfer", rec.firstByte, rec.end},
	}
	rec.mu.Unlock()
	for _, p := range phs {
		if p.start.IsZero() || p.end.IsZero() || p.end.Before(p.start) {
			continue
		}
		_, s := b.tracer.Start(ctx, p.name, trace.WithTimestamp(p.start),
			trace.WithAttributes(attribute.Int("pulse.probe.attempt", attempt)))
		s.End(trace.WithTimestamp(p.end))
	}
}

// mdCarrier lets the W3C propagator write into gRPC metadata-like maps.
type mdCarrier map[string][]string

func (c mdCarrier) Get(k string) string {
	if v := c[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}
func (c mdCarrier) Set(k, v string) { c[k] = []string{v} }
func (c mdCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}
