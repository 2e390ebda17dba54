package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

type beatFlags struct {
	service, instance string
	monitor           string
	transport         string
	keyFile           string
	tokenFile         string
	interval          time.Duration
	jitter            time.Duration
	timeout           time.Duration
	check             string
	checkInterval     time.Duration
	checkTimeout      time.Duration
	ca, cert, key     string
	serverName        string
}

func newBeatCmd() *cobra.Command {
	var f beatFlags
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "beat",
		Short: "Send heartbeats for a service instance to a pulse monitor (sidecar)",
		Long: `beat sends heartbeats for one service instance to a pulse monitor until it
is stopped (SIGINT/SIGTERM). With --check it probes a local URL in the
background and puts the answer in every beat: a non-2xx answer is unhealthy,
a 2xx JSON body with "status":"DOWN" is unhealthy and one with a non-zero
"code" is degraded.

  pulse beat --service api --key-file /etc/pulse/api.key --check http://localhost:8080/readyz
  pulse beat --service api --transport http --monitor https://monitor:7700 --token-file token --tls-ca ca.pem`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBeat(cmd.Context(), cmd.ErrOrStderr(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.service, "service", "", "service id (required)")
	fl.StringVar(&f.instance, "instance", host, "instance id")
	fl.StringVar(&f.monitor, "monitor", "", "monitor address: host:port for udp (default 127.0.0.1:7702) and grpc (127.0.0.1:7701), a URL for http (http://127.0.0.1:7700)")
	fl.StringVar(&f.transport, "transport", "udp", "udp, http or grpc")
	fl.StringVar(&f.keyFile, "key-file", "", "UDP key file: lines of ID:SECRET (the same secret string as in pulse.yaml); the first key signs")
	fl.StringVar(&f.tokenFile, "token-file", "", "HTTP/gRPC bearer token file (or set PULSE_TOKEN)")
	fl.DurationVar(&f.interval, "interval", 10*time.Second, "beat interval until the monitor says otherwise")
	fl.DurationVar(&f.jitter, "jitter", 0, "± jitter per interval (default interval/10)")
	fl.DurationVar(&f.timeout, "timeout", 0, "per-beat timeout (default min(interval, 5s))")
	fl.StringVar(&f.check, "check", "", "local URL whose answer sets the beats' status, e.g. http://localhost:8080/readyz")
	fl.DurationVar(&f.checkInterval, "check-interval", 0, "how often to run --check (default the beat interval)")
	fl.DurationVar(&f.checkTimeout, "check-timeout", 2*time.Second, "timeout of one --check")
	fl.StringVar(&f.ca, "tls-ca", "", "PEM CA bundle to verify the monitor (HTTP/gRPC)")
	fl.StringVar(&f.cert, "tls-cert", "", "client certificate (PEM) for mTLS")
	fl.StringVar(&f.key, "tls-key", "", "client key (PEM) for mTLS")
	fl.StringVar(&f.serverName, "tls-server-name", "", "expected monitor certificate name")
	return cmd
}

func runBeat(ctx context.Context, stderr io.Writer, f beatFlags) error {
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	tr, err := wire.ParseTransport(f.transport)
	if err != nil {
		return err
	}
	cfg := heartbeat.Config{
		Service: f.service, Instance: f.instance, Transport: tr, Target: f.monitor,
		Interval: f.interval, Jitter: f.jitter, Timeout: f.timeout,
	}
	if cfg.Target == "" {
		cfg.Target = map[wire.Transport]string{wire.UDP: "127.0.0.1:7702", wire.HTTP: "http://127.0.0.1:7700", wire.GRPC: "127.0.0.1:7701"}[tr]
	}
	switch tr {
	case wire.UDP:
		if f.keyFile == "" {
			return errors.New("beat: UDP needs --key-file (a file with a line ID:SECRET, the secret as written in the monitor's pulse.yaml)")
		}
		data, err := os.ReadFile(f.keyFile)
		if err != nil {
			return fmt.Errorf("beat: read key file: %w", err)
		}
		keys, err := wire.ParseKeyFile(data)
		if err != nil {
			return fmt.Errorf("beat: key file %s: %w", f.keyFile, err)
		}
		cfg.Key = keys[0]
	default:
		tok := os.Getenv("PULSE_TOKEN")
		if f.tokenFile != "" {
			data, err := os.ReadFile(f.tokenFile)
			if err != nil {
				return fmt.Errorf("beat: read token file: %w", err)
			}
			tok = strings.TrimSpace(string(data))
		}
		if tok == "" {
			return fmt.Errorf("beat: %s needs a bearer token: --token-file or PULSE_TOKEN", tr)
		}
		cfg.Token = tok
		if cfg.TLS, err = beatTLS(f, tr, cfg.Target); err != nil {
			return err
		}
	}

	var checkWG sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); checkWG.Wait() }()
	if f.check != "" {
		ci := f.checkInterval
		if ci <= 0 {
			ci = f.interval
		}
		st := &beatStatus{}
		check := httpBeatCheck(f.check, f.checkTimeout)
		// The first answer comes before the first beat, so the monitor
		// never sees a status the service has not shown.
		st.set(check(ctx))
		cfg.Status = st.get
		checkWG.Add(1)
		go func() {
			defer checkWG.Done()
			runBeatChecks(ctx, check, ci, st, log)
		}()
	}

	var failing atomic.Bool
	cfg.OnResult = func(r heartbeat.Result) {
		if r.Err == nil {
			if failing.Swap(false) {
				log.Info("beats acknowledged again", "service", cfg.Service, "instance", cfg.Instance, "seq", r.Seq, "rtt", r.RTT.String())
			}
			return
		}
		if errors.Is(r.Err, context.Canceled) {
			return
		}
		failing.Store(true)
		log.Warn("beat failed", "service", cfg.Service, "instance", cfg.Instance, "seq", r.Seq, "attempts", r.Attempts,
			"peer_addr", cfg.Target, "transport", tr.String(), "class", string(status.Classify(r.Err)), "err", r.Err.Error())
	}
	s, err := heartbeat.New(cfg)
	if err != nil {
		return err
	}
	log.Info("sending beats", "service", cfg.Service, "instance", cfg.Instance, "transport", tr.String(), "monitor", cfg.Target,
		"interval", cfg.Interval.String(), "epoch", s.Epoch())
	return s.Run(ctx)
}

func beatTLS(f beatFlags, tr wire.Transport, target string) (*tls.Config, error) {
	useTLS := f.ca != "" || f.cert != "" || f.serverName != "" || (tr == wire.HTTP && strings.HasPrefix(target, "https://"))
	if !useTLS {
		return nil, nil
	}
	c := &tls.Config{ServerName: f.serverName, MinVersion: tls.VersionTLS12}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, fmt.Errorf("beat: read --tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("beat: --tls-ca %s holds no PEM certificate", f.ca)
		}
		c.RootCAs = pool
	}
	if (f.cert == "") != (f.key == "") {
		return nil, errors.New("beat: give both --tls-cert and --tls-key for mTLS, or neither")
	}
	if f.cert != "" {
		kp, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("beat: load client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	return c, nil
}

// beatCheck probes the local service once. It is a function type so that
// the HTTP GET below can be swapped for probe.HTTP with CEL conditions.
type beatCheck func(ctx context.Context) (status.Status, wire.Reason)

// beatStatus holds the latest check answer; beats read it without waiting.
type beatStatus struct{ v atomic.Uint32 }

func (b *beatStatus) set(s status.Status, r wire.Reason) { b.v.Store(uint32(s)<<16 | uint32(r)) }
func (b *beatStatus) get() (status.Status, wire.Reason) {
	v := b.v.Load()
	return status.Status(v >> 16), wire.Reason(v & 0xffff)
}

func runBeatChecks(ctx context.Context, check beatCheck, every time.Duration, st *beatStatus, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	last, _ := st.get()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s, r := check(ctx)
		if ctx.Err() != nil {
			return
		}
		st.set(s, r)
		if s != last {
			log.Info("local check changed", "status", s.String(), "reason", r.String())
			last = s
		}
	}
}

// httpBeatCheck GETs url with a timeout and judges status and body: a
// non-2xx answer is unhealthy; a 2xx JSON body with "status" DOWN (or
// UNHEALTHY, OUT_OF_SERVICE) is unhealthy, with DEGRADED or a non-zero
// "code" degraded (AP-08: the status code alone is not enough).
func httpBeatCheck(url string, timeout time.Duration) beatCheck {
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{
		MaxIdleConnsPerHost: 1, IdleConnTimeout: 5 * time.Minute, ResponseHeaderTimeout: timeout,
	}}
	return func(ctx context.Context) (status.Status, wire.Reason) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return status.Unhealthy, wire.ReasonCheckError
		}
		resp, err := client.Do(req)
		if err != nil {
			if status.Classify(err) == status.ClassTimeout {
				return status.Unhealthy, wire.ReasonCheckTimeout
			}
			return status.Unhealthy, wire.ReasonCheckError
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if err != nil {
			if status.Classify(err) == status.ClassTimeout {
				return status.Unhealthy, wire.ReasonCheckTimeout
			}
			return status.Unhealthy, wire.ReasonCheckError
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return status.Unhealthy, wire.ReasonCheckStatus
		}
		return judgeBeatBody(body)
	}
}

func judgeBeatBody(body []byte) (status.Status, wire.Reason) {
	var doc struct {
		Status *string          `json:"status"`
		Code   *json.RawMessage `json:"code"`
	}
	if len(body) == 0 || json.Unmarshal(body, &doc) != nil {
		return status.Healthy, wire.ReasonNone // not JSON: the 2xx status is all there is
	}
	if doc.Status != nil {
		switch strings.ToUpper(strings.TrimSpace(*doc.Status)) {
		case "DOWN", "UNHEALTHY", "OUT_OF_SERVICE", "FAIL", "FAILED":
			return status.Unhealthy, wire.ReasonCheckBody
		case "DEGRADED", "WARN":
			return status.Degraded, wire.ReasonCheckBody
		}
	}
	if doc.Code != nil {
		var n json.Number
		if json.Unmarshal(*doc.Code, &n) == nil {
			if f, err := n.Float64(); err == nil && f != 0 {
				return status.Degraded, wire.ReasonCheckBody
			}
		} else if s := strings.Trim(string(*doc.Code), `"`); s != "" && s != "0" && !strings.EqualFold(s, "ok") {
			return status.Degraded, wire.ReasonCheckBody
		}
	}
	return status.Healthy, wire.ReasonNone
}
