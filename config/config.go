package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/fb4b1dcc/pulse/monitor"
)

// Config is a loaded, validated configuration.
type Config struct {
	Source string // file name
	Raw    []byte // file contents
	Hash   string // sha256 of Raw, first 12 hex digits

	Profile   string
	Listen    Listen
	DataDir   string
	Log       Log
	APITokens [][]byte
	TraceURL  string
	TLS       *TLS
	Telemetry Telemetry
	// Cluster is nil unless the file has a cluster section.
	Cluster *ClusterConfig

	// Spec is what the monitor applies.
	Spec monitor.Spec
}

// Preset is a named set of defaults, in the spirit of memberlist's
// DefaultLANConfig and DefaultWANConfig: start from one, change what
// differs.
type Preset struct {
	Passive       monitor.PassiveSpec
	Detector      monitor.DetectorSpec
	Protection    monitor.ProtectionSpec
	Verdict       monitor.VerdictSpec
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	Retention     time.Duration
}

// LAN is the default profile: one data centre, 1 s beats, detection in a
// few seconds.
func LAN() Preset {
	return Preset{
		Passive:  monitor.PassiveSpec{Interval: time.Second, Jitter: 100 * time.Millisecond},
		Detector: monitor.DetectorSpec{Type: "adaptive", Floor: 500 * time.Millisecond, Ceiling: 30 * time.Second},
		Protection: monitor.ProtectionSpec{SuspectShare: 0.3, MinGroup: 3, MaxEjection: 0.5,
			Backoff: 5 * time.Second, BackoffMax: 5 * time.Minute, Overwhelm: 10},
		Verdict: monitor.VerdictSpec{DownAfter: 2 * time.Second, RecoverAfter: 3, Retries: 1,
			StartupGrace: 10 * time.Second, RemoveGrace: 30 * time.Second, ForgetAfter: time.Hour,
			Flap: monitor.FlapSpec{Penalty: 1000, Suppress: 2000, Reuse: 750, HalfLife: 30 * time.Second}},
		ProbeInterval: 5 * time.Second,
		ProbeTimeout:  2 * time.Second,
		Retention:     7 * 24 * time.Hour,
	}
}

// WAN is for monitors that judge across regions: slower beats, more
// patience, larger deadlines.
func WAN() Preset {
	p := LAN()
	p.Passive = monitor.PassiveSpec{Interval: 5 * time.Second, Jitter: time.Second}
	p.Detector.Floor, p.Detector.Ceiling = 2*time.Second, 2*time.Minute
	p.Verdict.DownAfter = 10 * time.Second
	p.Verdict.StartupGrace = time.Minute
	p.Verdict.RemoveGrace = 2 * time.Minute
	p.Verdict.ForgetAfter = 6 * time.Hour
	p.Verdict.Flap.HalfLife = 2 * time.Minute
	p.ProbeInterval, p.ProbeTimeout = 15*time.Second, 5*time.Second
	return p
}

// Defaults of the daemon itself.
const (
	DefaultHTTPAddr = "127.0.0.1:7700"
	DefaultGRPCAddr = "127.0.0.1:7701"
	DefaultUDPAddr  = "127.0.0.1:7702"
	DefaultDataDir  = "./pulse-data"
)

// Default returns the configuration `pulse serve` runs with when no file is
// given: loopback listeners, the LAN preset, no services (instances
// register by their beats into services created on first sight is not
// allowed without a config: an open monitor would accept anyone).
func Default() (*Config, error) { return Parse("(defaults)", nil) }

func hashOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:6])
}

// Bounds keep values in ranges that make sense; they are wide, and exist to
// catch unit mistakes (an interval of 30h, a timeout of 1ns).
const (
	minInterval = 100 * time.Millisecond
	maxInterval = time.Hour
	minTimeout  = 10 * time.Millisecond
	maxTimeout  = 5 * time.Minute
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// build validates f and fills defaults, recording problems in p.
func build(f *File, p *problems) *Config {
	c := &Config{Listen: f.Listen, DataDir: f.DataDir, Log: f.Log, TLS: f.TLS, Telemetry: f.Telemetry, TraceURL: f.API.TraceURL}
	var preset Preset
	switch f.Profile {
	case "", "lan":
		c.Profile, preset = "lan", LAN()
	case "wan":
		c.Profile, preset = "wan", WAN()
	default:
		p.add("profile", "unknown profile %q (want lan or wan)", f.Profile)
		preset = LAN()
	}
	if c.Listen.HTTP == "" {
		c.Listen.HTTP = DefaultHTTPAddr
	}
	if c.Listen.GRPC == "" {
		c.Listen.GRPC = DefaultGRPCAddr
	}
	if c.Listen.UDP == "" {
		c.Listen.UDP = DefaultUDPAddr
	}
	for field, addr := range map[string]string{"listen.http": c.Listen.HTTP, "listen.grpc": c.Listen.GRPC, "listen.udp": c.Listen.UDP} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			p.add(field, "%q is not host:port (e.g. 127.0.0.1:7700, or :7700 for every interface)", addr)
		}
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	switch c.Log.Level {
	case "":
		c.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "unknown level %q (want debug, info, warn or error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "", "json", "text":
	default:
		p.add("log.format", "unknown format %q (want json or text)", c.Log.Format)
	}
	for i, s := range f.API.Tokens {
		if v := resolveSecret(p, fmt.Sprintf("api.tokens[%d]", i), s); v != nil {
			c.APITokens = append(c.APITokens, v)
		}
	}
	if f.TLS != nil {
		if f.TLS.CertFile == "" || f.TLS.KeyFile == "" {
			p.add("tls", "needs both cert_file and key_file")
		}
		for field, file := range map[string]string{"tls.cert_file": f.TLS.CertFile, "tls.key_file": f.TLS.KeyFile, "tls.client_ca_file": f.TLS.ClientCAFile} {
			if file != "" {
				if _, err := os.Stat(file); err != nil {
					p.add(field, "cannot read %s: %v", file, err)
				}
			}
		}
	}
	if o := f.Telemetry.OTLP; o != nil {
		if o.Endpoint == "" {
			p.add("telemetry.otlp.endpoint", "is required (host:port for grpc, URL for http)")
		}
		switch o.Protocol {
		case "", "grpc", "http":
		default:
			p.add("telemetry.otlp.protocol", "unknown protocol %q (want grpc or http)", o.Protocol)
		}
	}

	c.Spec.Retention = f.Retention.Or(preset.Retention)
	if c.Spec.Retention < time.Hour {
		p.add("retention", "%s is shorter than 1h; history would vanish before anyone reads it", c.Spec.Retention)
	}
	c.Spec.Anchors = f.Anchors
	c.Spec.AnchorInterval = preset.ProbeInterval
	for i, a := range f.Anchors {
		if _, _, err := net.SplitHostPort(stripScheme(a)); err != nil {
			p.add(fmt.Sprintf("anchors[%d]", i), "%q is not host:port or scheme://host:port", a)
		}
	}

	c.Cluster = buildCluster(f.Cluster, p)

	modules := buildModules(f, preset, p)
	seen := map[string]int{}
	for i, s := range f.Services {
		field := fmt.Sprintf("services[%d]", i)
		if prev, dup := seen[s.Name]; dup {
			p.add(field+".name", "service %q is declared twice (first at services[%d])", s.Name, prev)
			continue
		}
		seen[s.Name] = i
		c.Spec.Services = append(c.Spec.Services, buildService(field, s, f.Defaults, preset, modules, p))
	}
	return c
}

func stripScheme(a string) string {
	if i := strings.Index(a, "://"); i >= 0 {
		a = a[i+3:]
	}
	if i := strings.IndexByte(a, '/'); i >= 0 {
		a = a[:i]
	}
	return a
}

// resolveSecret reads a secret from exactly one of its sources.
func resolveSecret(p *problems, field string, s Secret) []byte {
	n := 0
	for _, v := range []string{s.Value, s.File, s.Env} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		p.add(field, "give exactly one of value, file or env")
		return nil
	}
	var v []byte
	switch {
	case s.Value != "":
		v = []byte(s.Value)
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			p.add(field+".file", "cannot read secret: %v", err)
			return nil
		}
		v = []byte(strings.TrimRight(string(b), "\r\n"))
	default:
		e, ok := os.LookupEnv(s.Env)
		if !ok {
			p.add(field+".env", "environment variable %s is not set", s.Env)
			return nil
		}
		v = []byte(e)
	}
	if len(v) < 16 {
		p.add(field, "secret is %d bytes; use at least 16 random bytes (e.g. openssl rand -hex 32)", len(v))
		return nil
	}
	return v
}
