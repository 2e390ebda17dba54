package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TraceOptions configures the daemon's tracing.
type TraceOptions struct {
	// OTLPEndpoint, when set (or when OTEL_EXPORTER_OTLP_ENDPOINT or
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set), exports spans over OTLP.
	OTLPEndpoint string
	OTLPProtocol string // grpc (default) or http
	OTLPInsecure bool
	OTLPHeaders  map[string]string
	// Stdout writes spans as JSON to StdoutWriter (default os.Stderr).
	Stdout       bool
	StdoutWriter io.Writer
	// SampleRatio of new traces (default 1; parent-based: a beat or probe
	// that arrives sampled stays sampled).
	SampleRatio float64
	Service     string // service.name (default "pulse")
}

// SetupTracing builds the SDK tracer provider from o and the standard
// OTEL_* environment variables. With nothing configured it returns a no-op
// provider, so tracing costs nothing unless asked for. shutdown flushes
// and stops the exporters.
func SetupTracing(ctx context.Context, o TraceOptions) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	envEndpoint := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	if o.OTLPEndpoint == "" && !envEndpoint && !o.Stdout {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	var opts []sdktrace.TracerProviderOption
	if o.OTLPEndpoint != "" || envEndpoint {
		exp, err := otlpExporter(ctx, o)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	if o.Stdout {
		w := o.StdoutWriter
		if w == nil {
			w = os.Stderr
		}
		exp, err := stdouttrace.New(stdouttrace.WithWriter(w))
		if err != nil {
			return nil, nil, fmt.Errorf("telemetry: stdout exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithSyncer(exp))
	}
	ratio := o.SampleRatio
	if ratio <= 0 || ratio > 1 {
		ratio = 1
	}
	name := o.Service
	if name == "" {
		name = "pulse"
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(name)))
	if err != nil {
		res = resource.Default()
	}
	opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))), sdktrace.WithResource(res))
	p := sdktrace.NewTracerProvider(opts...)
	// W3C trace context crosses HTTP and gRPC through the global propagator.
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return p, p.Shutdown, nil
}

func otlpExporter(ctx context.Context, o TraceOptions) (sdktrace.SpanExporter, error) {
	switch o.OTLPProtocol {
	case "", "grpc":
		var opts []otlptracegrpc.Option
		if o.OTLPEndpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpoint(o.OTLPEndpoint))
		}
		if o.OTLPInsecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		if len(o.OTLPHeaders) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(o.OTLPHeaders))
		}
		return otlptracegrpc.New(ctx, opts...)
	case "http":
		var opts []otlptracehttp.Option
		if o.OTLPEndpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpoint(o.OTLPEndpoint))
		}
		if o.OTLPInsecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		if len(o.OTLPHeaders) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(o.OTLPHeaders))
		}
		return otlptracehttp.New(ctx, opts...)
	}
	return nil, errors.New("telemetry: otlp protocol must be grpc or http")
}
