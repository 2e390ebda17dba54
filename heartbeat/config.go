package heartbeat

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/fb4b1dcc/pulse/clock"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

// StatusFunc reports the service's current health and a reason code. It is
// called once per beat on the sender's schedule, so it must be cheap and
// must not block: read a cached state (such as a health package snapshot),
// never run a check inline.
type StatusFunc func() (status.Status, wire.Reason)

// Config configures a Sender. Zero durations take the defaults listed.
type Config struct {
	Service, Instance string
	Transport         wire.Transport // UDP (default), HTTP or GRPC
	// Target is host:port for UDP and gRPC, and a URL for HTTP
	// ("https://monitor:7700"; the path defaults to /api/v1/beat).
	Target string
	Key    *wire.Key   // UDP: the signing key (required)
	Token  string      // HTTP and gRPC: bearer token (required)
	TLS    *tls.Config // HTTP(S) and gRPC; nil gRPC means plaintext

	Interval time.Duration // between beats (default 10s)
	Jitter   time.Duration // ± per interval (default Interval/10; at most Interval/2)
	// Timeout bounds one send: the whole HTTP/gRPC exchange, or the window
	// in which a UDP beat is retransmitted (default min(Interval, 5s)).
	Timeout time.Duration
	// MinInterval and MaxInterval bound what a monitor may ask for
	// (defaults 100ms and 1h), so a misconfigured monitor can neither
	// cause a storm nor silence the sender.
	MinInterval, MaxInterval time.Duration

	// UDP retransmission: the first after max(2×SRTT, MinRTO), doubling,
	// at most MaxRetransmits times (defaults 20ms, 4), never after the
	// next beat is due or the timeout has passed.
	MinRTO         time.Duration
	MaxRetransmits int

	// MaxInFlight is how many HTTP sends may overlap (default 2): a send
	// stuck for several intervals does not delay the beats after it.
	MaxInFlight int

	// Status gives each beat its status; nil means always healthy.
	Status StatusFunc
	// Epoch identifies this run to the monitor's replay window; it must
	// grow across restarts. 0 means the wall clock in Unix ns at Run.
	Epoch uint64
	// OnResult, if set, is called when each beat's exchange ends (ACKed,
	// failed or given up). It runs on the sender's goroutines: keep it quick.
	OnResult func(Result)
}

// Result describes how one beat went.
type Result struct {
	Seq      uint64
	Epoch    uint64
	Status   status.Status
	SentAt   time.Time     // first transmission (monotonic reading)
	Attempts int           // transmissions: UDP retransmissions and HTTP retries included
	Acked    bool          // the monitor answered (accepted or duplicate)
	Code     wire.AckCode  // when Acked
	RTT      time.Duration // answer time of the exchange that succeeded, handshakes excluded
	// Handshake is the TCP connect + TLS time of a new HTTP connection (0
	// when a pooled connection was reused); kept out of RTT.
	Handshake time.Duration
	Reused    bool // HTTP: the successful attempt used a pooled connection
	Err       error
}

// Option adjusts a Sender beyond Config.
type Option func(*options)

type options struct {
	clock clock.Clock
	tp    trace.TracerProvider
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	seed  uint64
	seedS bool
}

// WithClock sets the clock for scheduling (default real).
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// WithTracerProvider sets the provider of beat send spans (default
// otel.GetTracerProvider()).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tp = tp } }

// WithDialer replaces how connections are made (all transports), for
// proxies and tests.
func WithDialer(d func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(o *options) { o.dial = d }
}

// WithSeed makes phase and jitter draws reproducible.
func WithSeed(seed uint64) Option { return func(o *options) { o.seed, o.seedS = seed, true } }

func (c *Config) withDefaults() {
	if c.Transport == wire.TransportUnknown {
		c.Transport = wire.UDP
	}
	if c.Interval == 0 {
		c.Interval = 10 * time.Second
	}
	if c.Jitter == 0 {
		c.Jitter = c.Interval / 10
	}
	if c.Timeout == 0 {
		c.Timeout = min(c.Interval, 5*time.Second)
	}
	if c.MinInterval == 0 {
		c.MinInterval = min(100*time.Millisecond, c.Interval)
	}
	if c.MaxInterval == 0 {
		c.MaxInterval = max(time.Hour, c.Interval)
	}
	if c.MinRTO == 0 {
		c.MinRTO = 20 * time.Millisecond
	}
	if c.MaxRetransmits == 0 {
		c.MaxRetransmits = 4
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 2
	}
}

func (c *Config) validate() error {
	var errs []error
	if err := wire.ValidID(c.Service); err != nil {
		errs = append(errs, fmt.Errorf("heartbeat: service %q: must be 1-128 visible ASCII bytes", c.Service))
	}
	if err := wire.ValidID(c.Instance); err != nil {
		errs = append(errs, fmt.Errorf("heartbeat: instance %q: must be 1-128 visible ASCII bytes", c.Instance))
	}
	if c.Target == "" {
		errs = append(errs, errors.New("heartbeat: Target is required (the monitor's address)"))
	}
	switch c.Transport {
	case wire.UDP:
		if c.Key == nil {
			errs = append(errs, errors.New("heartbeat: UDP beats need a Key (id:hex-secret shared with the monitor)"))
		}
	case wire.HTTP:
		if c.Token == "" {
			errs = append(errs, errors.New("heartbeat: HTTP beats need a Token"))
		}
		if c.Target != "" {
			u, err := url.Parse(c.Target)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				errs = append(errs, fmt.Errorf("heartbeat: HTTP Target %q: want a URL like https://monitor:7700", c.Target))
			}
		}
	case wire.GRPC:
		if c.Token == "" {
			errs = append(errs, errors.New("heartbeat: gRPC beats need a Token"))
		}
	default:
		errs = append(errs, fmt.Errorf("heartbeat: unknown transport %v", c.Transport))
	}
	if c.Interval < time.Millisecond {
		errs = append(errs, fmt.Errorf("heartbeat: Interval %v is below 1ms", c.Interval))
	}
	if c.Jitter < 0 || c.Jitter > c.Interval/2 {
		errs = append(errs, fmt.Errorf("heartbeat: Jitter %v must be between 0 and Interval/2 (%v)", c.Jitter, c.Interval/2))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("heartbeat: negative Timeout"))
	}
	if c.MinInterval > c.MaxInterval {
		errs = append(errs, fmt.Errorf("heartbeat: MinInterval %v above MaxInterval %v", c.MinInterval, c.MaxInterval))
	}
	if c.MaxRetransmits < 0 || c.MaxRetransmits > 16 {
		errs = append(errs, fmt.Errorf("heartbeat: MaxRetransmits %d, want 0..16", c.MaxRetransmits))
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > 64 {
		errs = append(errs, fmt.Errorf("heartbeat: MaxInFlight %d, want 1..64", c.MaxInFlight))
	}
	return errors.Join(errs...)
}

func resolve(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	o.clock = clock.OrReal(o.clock)
	if o.tp == nil {
		o.tp = otel.GetTracerProvider()
	}
	return o
}
