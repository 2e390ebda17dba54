//go:build pulsedeps

// Package deps pins the modules pulse is about to use while the packages
// that import them are being written, so go mod tidy keeps them. Remove it
// once every module below is imported by real code.
package deps

import (
	_ "cel.dev/cel-go/cel"
	_ "github.com/Shopify/toxiproxy/v2"
	_ "github.com/chromedp/chromedp"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "go.etcd.io/etcd/client/v3"
	_ "go.etcd.io/etcd/server/v3/embed"
	_ "go.opentelemetry.io/otel"
	_ "go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	_ "go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	_ "go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	_ "go.opentelemetry.io/otel/sdk/trace"
	_ "go.uber.org/goleak"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/net/ipv4"
	_ "golang.org/x/tools/go/analysis"
	_ "google.golang.org/grpc"
	_ "google.golang.org/grpc/health"
	_ "modernc.org/sqlite"
)
