package ingest

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/fb4b1dcc/pulse/clock"
	"github.com/fb4b1dcc/pulse/wire"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

// Config configures a Receiver. Listeners are optional: a Receiver with no
// listener still serves Handler and the gRPC Beat method mounted on servers
// the caller owns (its Run must still run: it delivers to the Sink).
type Config struct {
	// UDP: listen on UDPAddr, or use UDPConn (the Receiver closes it).
	UDPAddr string
	UDPConn *net.UDPConn
	// HTTP and gRPC servers of the Receiver's own, serving only beats.
	HTTPAddr     string
	HTTPListener net.Listener
	GRPCAddr     string
	GRPCListener net.Listener
	// TLS, if set, is used by the Receiver's own HTTP and gRPC servers.
	// For mTLS set ClientAuth = tls.RequireAndVerifyClientCert and ClientCAs.
	TLS *tls.Config

	// Keys holds each service's UDP HMAC keys; Tokens each service's
	// bearer tokens for HTTP and gRPC. Both can be replaced at run time
	// (SetKeys, SetTokens).
	Keys   *wire.Keyring
	Tokens map[string][]string

	// Sink receives every accepted beat (required).
	Sink Sink
	// Directives returns the interval, jitter and timeout the monitor wants
	// the instance to use; they ride in every ACK. It is called once per
	// accepted beat with interned strings, so it must be cheap (a map
	// lookup in an immutable snapshot). Nil means "keep yours".
	Directives func(service, instance string) wire.Directive

	QueueSize    int           // observations between readers and the sink (default 65536)
	BatchSize    int           // datagrams per read and observations per sink call (default 256)
	Readers      int           // UDP reader goroutines (default min(GOMAXPROCS, 4))
	ReadBuffer   int           // UDP socket receive buffer in bytes (default 4 MiB)
	MaxInstances int           // instance table bound (default 200000; the daemon sets 2,000,000)
	IdleTTL      time.Duration // forget an instance's replay window after this long without beats (default 24h)
	MaxBodyBytes int64         // HTTP beat body limit (default 4096)

	// portableBatch forces the x/net ReadBatch path on Linux (tests).
	portableBatch bool
	// benchNoAcks skips writing ACKs; only the benchmark uses it, to
	// measure decode + authenticate + hand to the sink apart from the
	// ACK sends (on loopback a send also pays for the receiving side).
	benchNoAcks bool
}

// Option adjusts a Receiver beyond Config.
type Option func(*options)

type options struct {
	tp    trace.TracerProvider
	clock clock.Clock
}

// WithTracerProvider sets the provider of beat receive spans (default
// otel.GetTracerProvider()).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tp = tp } }

// WithClock sets the clock ReceivedAt and idle sweeps use (default real).
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

func (c *Config) withDefaults() {
	if c.QueueSize <= 0 {
		c.QueueSize = 1 << 16
	}
	if c.BatchSize <= 0 {
		// recvmmsg returns what is there without waiting to fill the
		// batch, so a large batch costs no latency and amortises the
		// syscalls under load.
		c.BatchSize = 256
	}
	if c.Readers <= 0 {
		c.Readers = min(runtime.GOMAXPROCS(0), 4)
	}
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = 4 << 20
	}
	if c.MaxInstances <= 0 {
		c.MaxInstances = 200000
	}
	if c.IdleTTL <= 0 {
		c.IdleTTL = 24 * time.Hour
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 4096
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.Sink == nil {
		errs = append(errs, errors.New("ingest: Sink is required"))
	}
	if c.UDPAddr != "" && c.UDPConn != nil {
		errs = append(errs, errors.New("ingest: set UDPAddr or UDPConn, not both"))
	}
	if c.HTTPAddr != "" && c.HTTPListener != nil {
		errs = append(errs, errors.New("ingest: set HTTPAddr or HTTPListener, not both"))
	}
	if c.GRPCAddr != "" && c.GRPCListener != nil {
		errs = append(errs, errors.New("ingest: set GRPCAddr or GRPCListener, not both"))
	}
	if (c.UDPAddr != "" || c.UDPConn != nil) && c.Keys == nil {
		errs = append(errs, errors.New("ingest: UDP beats need Keys (per-service HMAC keys); without them every beat would be dropped as unauthenticated"))
	}
	if err := checkTokens(c.Tokens); err != nil {
		errs = append(errs, err)
	}
	if c.BatchSize > 1024 {
		errs = append(errs, fmt.Errorf("ingest: BatchSize %d too large (max 1024)", c.BatchSize))
	}
	if c.QueueSize < c.BatchSize {
		errs = append(errs, fmt.Errorf("ingest: QueueSize %d smaller than BatchSize %d", c.QueueSize, c.BatchSize))
	}
	return errors.Join(errs...)
}

func checkTokens(m map[string][]string) error {
	var errs []error
	for svc, toks := range m {
		if err := wire.ValidID(svc); err != nil {
			errs = append(errs, fmt.Errorf("ingest: tokens for service %q: %w", svc, err))
		}
		for i, t := range toks {
			if len(t) < 16 {
				errs = append(errs, fmt.Errorf("ingest: token %d of service %q is %d bytes; use at least 16 random bytes", i, svc, len(t)))
			}
		}
	}
	return errors.Join(errs...)
}

func resolveOptions(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.tp == nil {
		o.tp = otel.GetTracerProvider()
	}
	o.clock = clock.OrReal(o.clock)
	return o
}
