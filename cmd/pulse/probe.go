package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fb4b1dcc/pulse/condition"
	"github.com/fb4b1dcc/pulse/probe"
	"github.com/fb4b1dcc/pulse/status"
)

// Exit codes of `pulse probe`, compatible with grpc_health_probe where they
// overlap, plus 5 for degraded. Documented in docs/probe.md.
const (
	exitHealthy    = 0
	exitBadArgs    = 1 // the command line or module is invalid
	exitConnection = 2 // DNS, TCP connect or TLS handshake failed: no transport
	exitProtocol   = 3 // connected, but the exchange failed (timeout, RPC error, unparseable answer)
	exitUnhealthy  = 4 // answered, and the answer says unhealthy (condition, NOT_SERVING)
	exitDegraded   = 5 // answered, degraded (a degraded rule matched, certificate expiring)
)

type probeFlags struct {
	kind           string
	timeout        time.Duration
	expect         []string
	degraded       []string
	degradedReason []string
	status         int
	headers        []string
	method         string
	data           string
	follow         bool
	bodyLimit      int64
	http1          bool
	service        string
	rpcHeaders     []string
	tls            bool
	ca, cert, key  string
	serverName     string
	insecure       bool
	send           string
	expectReply    string
	expiryWarning  time.Duration
	dnsServer      string
	dnsType        string
	dnsExpect      []string
	verbose        bool
	jsonOut        bool
	degradedOK     bool
}

func newProbeCmd() *cobra.Command {
	var f probeFlags
	cmd := &cobra.Command{
		Use:   "probe TARGET",
		Short: "Probe a target once and exit with its health (usable as a Kubernetes exec probe)",
		Long: `Probe a target once: print one line (status, target, latency, reason) and exit
with a code that says what happened:

  0 healthy   1 bad arguments   2 connection failure (DNS, connect, TLS)
  3 RPC/protocol failure (connected, but no usable answer)
  4 unhealthy (answered: NOT_SERVING, or a condition failed)   5 degraded

Codes 0-4 match grpc_health_probe. The protocol comes from the target's scheme:
http:// https:// grpc:// grpcs:// tcp:// tls:// udp:// dns://`,
		Example: `  pulse probe https://svc:8443/healthz --expect 'json.code == 0' --timeout 2s
  pulse probe https://svc:8443/healthz --status 200 --degraded 'json.code == 503' --degraded-reason json.msg
  pulse probe grpc://svc:9000 --service foo
  pulse probe grpcs://svc:9443 --ca ca.pem --cert client.pem --key client-key.pem
  pulse probe tcp://db:5432
  pulse probe tls://svc:443 --expiry-warning 336h`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return &exitError{exitBadArgs, "pulse probe: want exactly one TARGET, e.g. https://svc:8443/healthz or grpc://svc:9000"}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runProbe(cmd, args[0], &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.kind, "kind", "", "protocol when TARGET has no scheme: http, grpc, tcp, tls, udp or dns")
	fl.DurationVar(&f.timeout, "timeout", time.Second, "deadline for the whole probe (keep it below the Kubernetes timeoutSeconds)")
	fl.StringArrayVar(&f.expect, "expect", nil, "CEL condition that must hold for healthy (repeatable), e.g. 'json.code == 0'")
	fl.StringArrayVar(&f.degraded, "degraded", nil, "CEL condition that means degraded (repeatable), e.g. 'json.code == 503'")
	fl.StringArrayVar(&f.degradedReason, "degraded-reason", nil, "CEL reason for the --degraded at the same position, e.g. json.msg")
	fl.IntVar(&f.status, "status", 0, "required HTTP status code (sugar for --expect 'status == N')")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "HTTP request header 'Name: value' (repeatable)")
	fl.StringVarP(&f.method, "method", "X", "", "HTTP method (default GET)")
	fl.StringVarP(&f.data, "data", "d", "", "HTTP request body")
	fl.BoolVar(&f.follow, "follow-redirects", false, "follow HTTP redirects (off: a redirect is judged as it is)")
	fl.Int64Var(&f.bodyLimit, "body-limit", probe.DefaultBodyLimit, "bytes of the HTTP body to read")
	fl.BoolVar(&f.http1, "http1", false, "do not use HTTP/2")
	fl.StringVar(&f.service, "service", "", "gRPC health service name")
	fl.StringArrayVar(&f.rpcHeaders, "rpc-header", nil, "gRPC metadata 'name: value' (repeatable)")
	fl.BoolVar(&f.tls, "tls", false, "use TLS for grpc:// (grpcs:// implies it)")
	fl.StringVar(&f.ca, "ca", "", "PEM file of CA certificates to trust instead of the system's")
	fl.StringVar(&f.cert, "cert", "", "PEM client certificate for mutual TLS")
	fl.StringVar(&f.key, "key", "", "PEM client key for mutual TLS")
	fl.StringVar(&f.serverName, "server-name", "", "TLS server name (SNI and verification) instead of the target's host")
	fl.BoolVar(&f.insecure, "insecure", false, "accept any server certificate (INSECURE)")
	fl.StringVar(&f.send, "send", "", "tcp/udp: payload to send (escapes such as \\r\\n are honoured)")
	fl.StringVar(&f.expectReply, "expect-reply", "", "tcp/udp: regular expression the reply must match")
	fl.DurationVar(&f.expiryWarning, "expiry-warning", 0, "degraded when the certificate expires sooner (tls default 336h)")
	fl.StringVar(&f.dnsServer, "dns-server", "", "dns: server host:port (default: the system's)")
	fl.StringVar(&f.dnsType, "dns-type", "A", "dns: A, A4, AAAA, CNAME, MX, NS or TXT")
	fl.StringArrayVar(&f.dnsExpect, "dns-expect", nil, "dns: answer that must be present (repeatable)")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "also print phase timings, connection facts and a body excerpt")
	fl.BoolVar(&f.jsonOut, "json", false, "print one JSON object instead of text")
	fl.BoolVar(&f.degradedOK, "degraded-ok", false, "exit 0 on degraded (for liveness probes: degraded must not restart the pod)")
	return cmd
}

func runProbe(cmd *cobra.Command, target string, f *probeFlags) error {
	m, target, err := probeModule(target, f)
	if err != nil {
		return &exitError{exitBadArgs, "pulse probe: " + err.Error()}
	}
	p, err := probe.New(m)
	if err != nil {
		return &exitError{exitBadArgs, "pulse probe: " + err.Error()}
	}
	r := p.Probe(cmd.Context(), target)
	p.Close()
	out := cmd.OutOrStdout()
	if f.jsonOut {
		if err := writeProbeJSON(out, r); err != nil {
			return err
		}
	} else {
		writeProbeText(out, r, f.verbose)
	}
	code := probeExitCode(r)
	if code == exitDegraded && f.degradedOK {
		code = exitHealthy
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// probeExitCode maps a result onto the grpc_health_probe-compatible codes.
func probeExitCode(r probe.Result) int {
	switch {
	case r.Status == status.Healthy:
		return exitHealthy
	case r.Status == status.Degraded:
		return exitDegraded
	case r.Class == status.ClassInternal:
		return exitBadArgs
	case !r.Connected:
		return exitConnection
	case r.Class == status.ClassCondition:
		return exitUnhealthy
	}
	return exitProtocol
}

// probeModule builds the module from the flags and the target's scheme.
func probeModule(target string, f *probeFlags) (probe.Module, string, error) {
	if f.timeout <= 0 {
		return probe.Module{}, "", fmt.Errorf("--timeout must be positive (got %v)", f.timeout)
	}
	kind := probe.Kind(f.kind)
	scheme := ""
	if i := strings.Index(target, "://"); i > 0 {
		scheme = strings.ToLower(target[:i])
	}
	grpcTLS := f.tls
	switch scheme {
	case "http", "https":
		kind = probe.KindHTTP
	case "grpc":
		kind = probe.KindGRPC
	case "grpcs":
		kind, grpcTLS = probe.KindGRPC, true
	case "tcp", "tls", "udp", "dns":
		kind = probe.Kind(scheme)
	case "":
		if kind == "" {
			return probe.Module{}, "", fmt.Errorf("target %q has no scheme: write https://%s/path, grpc://%s, tcp://%s … or pass --kind", target, target, target, target)
		}
		if kind == probe.KindHTTP {
			target = "http://" + target
		}
	default:
		return probe.Module{}, "", fmt.Errorf("unknown scheme %q in %q (want http, https, grpc, grpcs, tcp, tls, udp or dns)", scheme, target)
	}
	if kind == probe.KindHTTP {
		if u, err := url.Parse(target); err != nil || u.Host == "" {
			return probe.Module{}, "", fmt.Errorf("target %q is not a valid URL", target)
		}
	}
	if len(f.degradedReason) > len(f.degraded) {
		return probe.Module{}, "", fmt.Errorf("%d --degraded-reason for %d --degraded: each reason goes with the --degraded at its position", len(f.degradedReason), len(f.degraded))
	}
	if (f.cert == "") != (f.key == "") {
		return probe.Module{}, "", fmt.Errorf("--cert and --key go together")
	}
	if f.insecure && f.ca != "" {
		return probe.Module{}, "", fmt.Errorf("--insecure and --ca contradict each other: the CA would not be used")
	}
	m := probe.Module{
		Kind:          kind,
		Timeout:       f.timeout,
		ExpiryWarning: f.expiryWarning,
		TLS: probe.TLSClientConfig{
			CAFile: f.ca, CertFile: f.cert, KeyFile: f.key,
			ServerName: f.serverName, InsecureSkipVerify: f.insecure,
		},
		HTTP: probe.HTTPConfig{
			Method: f.method, Body: f.data, FollowRedirects: f.follow,
			BodyLimit: f.bodyLimit, DisableHTTP2: f.http1,
		},
		GRPC: probe.GRPCConfig{Service: f.service, TLS: grpcTLS},
		TCP:  probe.TCPConfig{Send: unescape(f.send), Expect: f.expectReply},
		UDP:  probe.UDPConfig{Send: unescape(f.send), Expect: f.expectReply},
		DNS:  probe.DNSConfig{Server: f.dnsServer, Type: f.dnsType, Expect: f.dnsExpect},
		Conditions: condition.Spec{
			Healthy: f.expect,
		},
	}
	if f.status != 0 {
		m.Conditions.Expect = &condition.Expect{Status: f.status}
	}
	for i, d := range f.degraded {
		rule := condition.Rule{When: d}
		if i < len(f.degradedReason) {
			rule.Reason = f.degradedReason[i]
		}
		m.Conditions.Degraded = append(m.Conditions.Degraded, rule)
	}
	if len(f.headers) > 0 {
		m.HTTP.Headers = map[string]string{}
		for _, h := range f.headers {
			k, v, ok := strings.Cut(h, ":")
			if !ok || strings.TrimSpace(k) == "" {
				return probe.Module{}, "", fmt.Errorf("--header %q: want 'Name: value'", h)
			}
			m.HTTP.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if len(f.rpcHeaders) > 0 {
		m.GRPC.Metadata = map[string]string{}
		for _, h := range f.rpcHeaders {
			k, v, ok := strings.Cut(h, ":")
			if !ok || strings.TrimSpace(k) == "" {
				return probe.Module{}, "", fmt.Errorf("--rpc-header %q: want 'name: value'", h)
			}
			m.GRPC.Metadata[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m, target, nil
}

// unescape honours \r \n \t \\ in --send so line protocols can be typed.
func unescape(s string) string {
	return strings.NewReplacer(`\r`, "\r", `\n`, "\n", `\t`, "\t", `\\`, `\`).Replace(s)
}

func writeProbeText(w io.Writer, r probe.Result, verbose bool) {
	line := fmt.Sprintf("%s %s %s", r.Status, r.Target, fmtDur(r.Latency))
	if r.Class != status.ClassNone && r.Status != status.Healthy {
		line += " [" + string(r.Class) + "]"
	}
	if r.Reason != "" {
		line += " " + oneLine(r.Reason)
	}
	fmt.Fprintln(w, line)
	if !verbose {
		return
	}
	ph := r.Phases
	fmt.Fprintf(w, "  phases: dns=%s connect=%s tls=%s ttfb=%s transfer=%s\n",
		fmtDur(ph.DNS), fmtDur(ph.Connect), fmtDur(ph.TLS), fmtDur(ph.TTFB), fmtDur(ph.Transfer))
	fmt.Fprintf(w, "  peer: %s connected=%v reused=%v retried=%v tls_handshakes=%d\n",
		orDash(r.Peer), r.Connected, r.Reused, r.Retried, r.Handshakes)
	if r.HTTPStatus != 0 {
		fmt.Fprintf(w, "  http: %d\n", r.HTTPStatus)
	}
	if r.GRPCStatus != "" {
		fmt.Fprintf(w, "  grpc: %s\n", r.GRPCStatus)
	}
	if !r.TLSNotAfter.IsZero() {
		fmt.Fprintf(w, "  tls: certificate not after %s (%s left)\n", r.TLSNotAfter.UTC().Format(time.RFC3339),
			time.Until(r.TLSNotAfter).Round(time.Minute))
	}
	if r.TraceID != "" {
		fmt.Fprintf(w, "  trace: %s span %s\n", r.TraceID, r.SpanID)
	}
	if r.Body != "" {
		fmt.Fprintf(w, "  body: %s\n", oneLine(r.Body))
	}
}

type probeJSON struct {
	Status      string             `json:"status"`
	Target      string             `json:"target"`
	Kind        string             `json:"kind"`
	LatencyMS   float64            `json:"latency_ms"`
	Reason      string             `json:"reason,omitempty"`
	Class       string             `json:"class,omitempty"`
	ExitCode    int                `json:"exit_code"`
	Phases      map[string]string  `json:"phases"`
	PhasesMS    map[string]float64 `json:"phases_ms"`
	Peer        string             `json:"peer,omitempty"`
	Connected   bool               `json:"connected"`
	Reused      bool               `json:"reused"`
	Retried     bool               `json:"retried"`
	Handshakes  int                `json:"tls_handshakes"`
	HTTPStatus  int                `json:"http_status,omitempty"`
	GRPCStatus  string             `json:"grpc_status,omitempty"`
	TLSNotAfter *time.Time         `json:"tls_not_after,omitempty"`
	Body        string             `json:"body,omitempty"`
	TraceID     string             `json:"trace_id,omitempty"`
	Start       time.Time          `json:"start"`
}

func writeProbeJSON(w io.Writer, r probe.Result) error {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	ph := r.Phases
	j := probeJSON{
		Status: r.Status.String(), Target: r.Target, Kind: string(r.Kind), LatencyMS: ms(r.Latency),
		Reason: r.Reason, Class: string(r.Class), ExitCode: probeExitCode(r),
		Phases: map[string]string{
			"dns": ph.DNS.String(), "connect": ph.Connect.String(), "tls": ph.TLS.String(),
			"ttfb": ph.TTFB.String(), "transfer": ph.Transfer.String(),
		},
		PhasesMS: map[string]float64{
			"dns": ms(ph.DNS), "connect": ms(ph.Connect), "tls": ms(ph.TLS),
			"ttfb": ms(ph.TTFB), "transfer": ms(ph.Transfer),
		},
		Peer: r.Peer, Connected: r.Connected, Reused: r.Reused, Retried: r.Retried, Handshakes: r.Handshakes,
		HTTPStatus: r.HTTPStatus, GRPCStatus: r.GRPCStatus, Body: r.Body, TraceID: r.TraceID, Start: r.Start,
	}
	if !r.TLSNotAfter.IsZero() {
		t := r.TLSNotAfter.UTC()
		j.TLSNotAfter = &t
	}
	enc := json.NewEncoder(w)
	return enc.Encode(j)
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
