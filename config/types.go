package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fb4b1dcc/pulse/probe"
)

// Duration is a YAML duration that must carry a unit ("30s", "1m30s",
// "250ms"). A bare number is rejected: `interval: 30` has been read as 30
// nanoseconds (or 30 seconds, or 30 milliseconds) by too many programs.
type Duration struct {
	D   time.Duration
	Set bool // the field was present in the file
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeErr(n, "want a duration with a unit, e.g. 30s")
	}
	v := strings.TrimSpace(n.Value)
	if n.Tag == "!!int" || n.Tag == "!!float" || isNumber(v) {
		return typeErr(n, fmt.Sprintf("duration %q needs a unit, e.g. %ss or %sms", v, v, v))
	}
	p, err := time.ParseDuration(v)
	if err != nil {
		return typeErr(n, fmt.Sprintf("%q is not a duration (use a number with a unit: 500ms, 30s, 5m, 1h)", v))
	}
	d.D, d.Set = p, true
	return nil
}

// MarshalYAML writes the duration with its unit.
func (d Duration) MarshalYAML() (any, error) { return d.D.String(), nil }

// Or returns the duration, or def when the field was absent.
func (d Duration) Or(def time.Duration) time.Duration {
	if d.Set {
		return d.D
	}
	return def
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// Fraction is a share in [0,1], written as 0.3 or "30%".
type Fraction struct {
	V   float64
	Set bool
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (f *Fraction) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeErr(n, "want a share such as 0.3 or 30%")
	}
	v := strings.TrimSpace(n.Value)
	scale := 1.0
	if strings.HasSuffix(v, "%") {
		v, scale = strings.TrimSpace(strings.TrimSuffix(v, "%")), 100
	}
	x, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return typeErr(n, fmt.Sprintf("%q is not a share (write 0.3 or 30%%)", n.Value))
	}
	x /= scale
	if x < 0 || x > 1 {
		return typeErr(n, fmt.Sprintf("%q is outside 0..1 (0%%..100%%)", n.Value))
	}
	f.V, f.Set = x, true
	return nil
}

// MarshalYAML writes the share as a percentage.
func (f Fraction) MarshalYAML() (any, error) {
	return strconv.FormatFloat(f.V*100, 'f', -1, 64) + "%", nil
}

// Or returns the share, or def when absent.
func (f Fraction) Or(def float64) float64 {
	if f.Set {
		return f.V
	}
	return def
}

func typeErr(n *yaml.Node, msg string) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, msg)}}
}

// Secret is a credential given inline, from a file or from an environment
// variable (exactly one). Files and variables keep secrets out of the
// config file and out of `pulse config check` output.
type Secret struct {
	Value string `yaml:"value,omitempty"`
	File  string `yaml:"file,omitempty"`
	Env   string `yaml:"env,omitempty"`
}

// File is the whole of pulse.yaml.
type File struct {
	// Profile picks the defaults: lan (1s beats, tight detection) or wan
	// (5s beats, patient detection). Default lan.
	Profile   string            `yaml:"profile,omitempty"`
	Listen    Listen            `yaml:"listen,omitempty"`
	DataDir   string            `yaml:"data_dir,omitempty"`
	Retention Duration          `yaml:"retention,omitempty"`
	Log       Log               `yaml:"log,omitempty"`
	API       API               `yaml:"api,omitempty"`
	TLS       *TLS              `yaml:"tls,omitempty"`
	Telemetry Telemetry         `yaml:"telemetry,omitempty"`
	Anchors   []string          `yaml:"anchors,omitempty"`
	Defaults  Policy            `yaml:"defaults,omitempty"`
	Modules   map[string]Module `yaml:"modules,omitempty"`
	Services  []Service         `yaml:"services,omitempty"`
	Cluster   *Cluster          `yaml:"cluster,omitempty"`
}

// Cluster runs the node as one of several coordinated through etcd
// (docs/cluster.md). It is node-local: `pulse serve` flags override it,
// and a configuration pushed to etcd does not change it.
type Cluster struct {
	Endpoints []string `yaml:"endpoints,omitempty"` // etcd client URLs
	NodeID    string   `yaml:"node_id,omitempty"`   // unique and stable per node
	Zone      string   `yaml:"zone,omitempty"`      // the node's failure domain
	// Advertise is the gRPC host:port peers dial (default: listen.grpc,
	// which must then not be a wildcard).
	Advertise string   `yaml:"advertise,omitempty"`
	LeaseTTL  Duration `yaml:"lease_ttl,omitempty"` // default 10s
	// ConfirmQuorum: vantage points in other zones that must see a probed
	// instance fail before it is declared down (default 1).
	ConfirmQuorum int     `yaml:"confirm_quorum,omitempty"`
	Token         *Secret `yaml:"token,omitempty"` // authenticates nodes to each other
	// PeerCAFile verifies peers' certificates when the listeners use TLS
	// (default: the system roots).
	PeerCAFile string   `yaml:"peer_ca_file,omitempty"`
	Etcd       EtcdAuth `yaml:"etcd,omitempty"`
}

// EtcdAuth reaches a secured etcd.
type EtcdAuth struct {
	CAFile   string  `yaml:"ca_file,omitempty"`
	CertFile string  `yaml:"cert_file,omitempty"`
	KeyFile  string  `yaml:"key_file,omitempty"`
	Username string  `yaml:"username,omitempty"`
	Password *Secret `yaml:"password,omitempty"`
}

// Listen holds listener addresses.
type Listen struct {
	HTTP string `yaml:"http,omitempty"`
	GRPC string `yaml:"grpc,omitempty"`
	UDP  string `yaml:"udp,omitempty"`
}

// Log configures the daemon's logs.
type Log struct {
	Level  string `yaml:"level,omitempty"`  // debug, info, warn, error
	Format string `yaml:"format,omitempty"` // json, text
}

// API configures the read API and dashboard.
type API struct {
	Tokens []Secret `yaml:"tokens,omitempty"`
	// TraceURL is a URL template for the dashboard's trace links, with
	// {trace_id} replaced, e.g. http://jaeger:16686/trace/{trace_id}.
	TraceURL string `yaml:"trace_url,omitempty"`
}

// TLS configures TLS on the HTTP and gRPC listeners.
type TLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file,omitempty"` // require client certificates (mTLS)
}

// Telemetry configures traces.
type Telemetry struct {
	OTLP        *OTLP    `yaml:"otlp,omitempty"`
	Stdout      bool     `yaml:"stdout,omitempty"`
	SampleRatio Fraction `yaml:"sample_ratio,omitempty"`
}

// OTLP configures the OTLP trace exporter.
type OTLP struct {
	Endpoint string            `yaml:"endpoint"`
	Protocol string            `yaml:"protocol,omitempty"` // grpc (default) or http
	Insecure bool              `yaml:"insecure,omitempty"`
	Headers  map[string]string `yaml:"headers,omitempty"`
}

// Policy is the part of a service's settings that defaults can supply.
type Policy struct {
	Passive    *Passive    `yaml:"passive,omitempty"`
	Detector   *Detector   `yaml:"detector,omitempty"`
	Protection *Protection `yaml:"protection,omitempty"`
	Verdict    *Verdict    `yaml:"verdict,omitempty"`
}

// Service is one monitored service.
type Service struct {
	Name string `yaml:"name"`
	// RegisterByBeats admits instances the config does not list when their
	// first authenticated beat arrives (default true when passive is set).
	RegisterByBeats *bool      `yaml:"register_by_beats,omitempty"`
	Instances       []Instance `yaml:"instances,omitempty"`
	Active          []Active   `yaml:"active,omitempty"`
	Metrics         Metrics    `yaml:"metrics,omitempty"`
	Policy          `yaml:",inline"`
}

// Instance is a statically declared instance.
type Instance struct {
	Name   string            `yaml:"name"`
	Target string            `yaml:"target,omitempty"` // address active probes use
	Zone   string            `yaml:"zone,omitempty"`
	Labels map[string]string `yaml:"labels,omitempty"`
}

// Passive configures heartbeats received from the service.
type Passive struct {
	Interval Duration `yaml:"interval,omitempty"` // the interval senders are told to use
	Jitter   Duration `yaml:"jitter,omitempty"`   // the jitter senders add
	Keys     []Key    `yaml:"keys,omitempty"`     // HMAC keys for UDP beats
	Tokens   []Secret `yaml:"tokens,omitempty"`   // bearer tokens for HTTP/gRPC beats
}

// Key is one HMAC key for UDP beats.
type Key struct {
	ID     uint16 `yaml:"id"`
	Secret Secret `yaml:"secret"`
}

// Active runs a probe module against every instance with a target.
type Active struct {
	Module   string   `yaml:"module"`
	Interval Duration `yaml:"interval,omitempty"`
	Timeout  Duration `yaml:"timeout,omitempty"` // overrides the module's
}

// Detector chooses and tunes the failure detector.
type Detector struct {
	// Type: adaptive (default), phi, phi-exponential, fixed, seedfix.
	Type      string   `yaml:"type,omitempty"`
	Threshold float64  `yaml:"threshold,omitempty"`
	Floor     Duration `yaml:"floor,omitempty"`   // shortest deadline
	Ceiling   Duration `yaml:"ceiling,omitempty"` // longest deadline
	Timeout   Duration `yaml:"timeout,omitempty"` // for type fixed
}

// Protection configures the response to correlated failure (AP-16).
type Protection struct {
	// SuspectShare: when this share of a zone's or service's instances is
	// suspect at once, presume a network or monitor fault (default 30%).
	SuspectShare Fraction `yaml:"suspect_share,omitempty"`
	// MinGroup: protection only for zones/services of at least this many
	// instances (default 3).
	MinGroup *int `yaml:"min_group,omitempty"`
	// MaxEjection: at most this share of a service may be down at once
	// (default 50%, as a share: 0.5 or "50%").
	MaxEjection Fraction `yaml:"max_ejection,omitempty"`
	// Backoff between released ejections once capped (doubling up to
	// BackoffMax).
	Backoff    Duration `yaml:"backoff,omitempty"`
	BackoffMax Duration `yaml:"backoff_max,omitempty"`
	// Overwhelm: inside a protected zone an instance is still declared down
	// when its silence exceeds this multiple of the zone's typical silence.
	Overwhelm float64 `yaml:"overwhelm,omitempty"`
	Disabled  *bool   `yaml:"disabled,omitempty"`
}

// Verdict tunes the state machine.
type Verdict struct {
	DownAfter    Duration `yaml:"down_after,omitempty"`    // suspect this long → down
	RecoverAfter *int     `yaml:"recover_after,omitempty"` // successes to return to alive
	Retries      *int     `yaml:"retries,omitempty"`       // extra probes before an active failure counts (0 allowed)
	StartupGrace Duration `yaml:"startup_grace,omitempty"` // no down verdicts this soon after start or registration
	RemoveGrace  Duration `yaml:"remove_grace,omitempty"`  // an instance removed from config leaves after this
	ForgetAfter  Duration `yaml:"forget_after,omitempty"`  // a beat-registered instance down this long is forgotten
	Flap         *Flap    `yaml:"flap,omitempty"`
}

// Flap configures flap damping (as BGP route dampening).
type Flap struct {
	Penalty  float64  `yaml:"penalty,omitempty"`   // added per flap (default 1000)
	Suppress float64  `yaml:"suppress,omitempty"`  // held out above this (default 2000)
	Reuse    float64  `yaml:"reuse,omitempty"`     // back in below this (default 750)
	HalfLife Duration `yaml:"half_life,omitempty"` // penalty halves in this time (default 30s)
	Disabled *bool    `yaml:"disabled,omitempty"`
}

// Metrics configures per-service metrics.
type Metrics struct {
	// PerInstance adds an instance label to verdict series (bounded: see
	// docs/observability.md).
	PerInstance bool `yaml:"per_instance,omitempty"`
}

// Module is a named probe module: protocol, timeouts, TLS, the protocol's
// own settings and the conditions that judge the answer (see probe.Module
// and docs/probe.md). Durations inside need units too.
type Module struct {
	probe.Module `yaml:",inline"`
}
