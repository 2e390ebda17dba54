package probing

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fb4b1dcc/pulse/bench/internal/child"
	"github.com/fb4b1dcc/pulse/bench/internal/sysinfo"
	"github.com/fb4b1dcc/pulse/condition"
	"github.com/fb4b1dcc/pulse/probe"
	"github.com/fb4b1dcc/pulse/status"
)

// Role names.
const (
	FleetRole  = "tls-fleet"
	ProberRole = "prober"
)

// PKI is a CA and a server certificate for 127.0.0.1, made for the run.
type PKI struct {
	CAPEM, CertPEM, KeyPEM []byte
}

// NewPKI makes an ECDSA P-256 CA and a leaf for 127.0.0.1.
func NewPKI() (*PKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "fleet"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leafT, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &PKI{
		CAPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}, nil
}

// FleetInput configures a fleet child.
type FleetInput struct {
	Count int
	PKI   PKI
}

// FleetStats counts what the fleet served.
type FleetStats struct {
	Handshakes, Conns, Requests int64
	CPU                         float64
}

// FleetMain serves Count HTTPS listeners answering {"code":0,"msg":"ok"}.
func FleetMain(ctx context.Context, c *child.Conn) (any, error) {
	var in FleetInput
	if err := c.Input(&in); err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(in.PKI.CertPEM, in.PKI.KeyPEM)
	if err != nil {
		return nil, err
	}
	var hs, conns, reqs atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			reqs.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"code":0,"msg":"ok"}`)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			hs.Add(1)
			return nil, nil
		}},
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
		IdleTimeout:       5 * time.Minute,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	var wg sync.WaitGroup
	defer func() { _ = srv.Close(); wg.Wait() }()
	addrs := make([]string, 0, in.Count)
	for range in.Count {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		addrs = append(addrs, ln.Addr().String())
		wg.Add(1)
		go func() { defer wg.Done(); _ = srv.ServeTLS(ln, "", "") }()
	}
	if err := c.Send(addrs); err != nil {
		return nil, err
	}
	for range c.Commands() {
		if err := c.Send(FleetStats{Handshakes: hs.Load(), Conns: conns.Load(), Requests: reqs.Load(), CPU: sysinfo.SelfCPU().Seconds()}); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// ProberInput configures a prober child.
type ProberInput struct {
	Mode     string // pulse or naive
	URLs     []string
	Interval time.Duration
	Warm     time.Duration // probing before the measured window
	Secs     float64       // measured window
	CAPEM    []byte
}

// ProberResult is the measured window.
type ProberResult struct {
	Mode          string
	Targets       int
	Probes        int64
	Healthy       int64
	CPU           float64
	Wall          float64
	P50, P99      float64
	Reasons       map[string]int
	Reused        int64
	Handshakes    int64 // probe.Result.Handshakes (pulse)
	WarmupProbes  int64
	WarmupHealthy int64
}

type probeFunc func(ctx context.Context, url string) (ok bool, reason string)

// ProberMain probes every URL at the interval, phases spread evenly.
func ProberMain(ctx context.Context, c *child.Conn) (any, error) {
	var in ProberInput
	if err := c.Input(&in); err != nil {
		return nil, err
	}
	var measuring atomic.Bool
	var reused, handshakes atomic.Int64
	var pf probeFunc
	switch in.Mode {
	case "pulse":
		pr, err := probe.New(probe.Module{
			Kind: probe.KindHTTP, Timeout: 2 * time.Second, Interval: in.Interval,
			TLS:           probe.TLSClientConfig{CAPEM: in.CAPEM},
			Conditions:    condition.Spec{Expect: &condition.Expect{Status: 200, JSON: map[string]any{"code": 0}}},
			ExpiryWarning: -1,
		})
		if err != nil {
			return nil, err
		}
		defer pr.Close()
		pf = func(ctx context.Context, u string) (bool, string) {
			r := pr.Probe(ctx, u)
			if measuring.Load() {
				if r.Reused {
					reused.Add(1)
				}
				handshakes.Add(int64(r.Handshakes))
			}
			return r.Status == status.Healthy, r.Reason
		}
	case "naive":
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(in.CAPEM)
		pf = func(ctx context.Context, u string) (bool, string) {
			// What a hand-written checker does: a new client (and so a
			// new transport, connection and TLS handshake) per probe.
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr, Timeout: 2 * time.Second}
			resp, err := cl.Get(u)
			if err != nil {
				return false, err.Error()
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			if resp.StatusCode != 200 || !jsonCodeZero(body) {
				return false, fmt.Sprintf("status %d", resp.StatusCode)
			}
			return true, ""
		}
	default:
		return nil, fmt.Errorf("probing: unknown mode %q", in.Mode)
	}
	res := ProberResult{Mode: in.Mode, Targets: len(in.URLs), Reasons: map[string]int{}}
	var (
		mu                   sync.Mutex
		lat                  []float64
		n, ok, warmN, warmOK atomic.Int64
	)
	total := in.Warm + time.Duration(in.Secs*float64(time.Second))
	pctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()
	var cpu0 time.Duration
	var t0 time.Time
	warmed := make(chan struct{})
	warmTimer := time.AfterFunc(in.Warm, func() {
		cpu0 = sysinfo.SelfCPU()
		t0 = time.Now()
		measuring.Store(true)
		close(warmed)
	})
	defer warmTimer.Stop()
	var wg sync.WaitGroup
	for i, u := range in.URLs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			phase := time.NewTimer(in.Interval * time.Duration(i) / time.Duration(len(in.URLs)))
			defer phase.Stop()
			select {
			case <-phase.C:
			case <-pctx.Done():
				return
			}
			tick := time.NewTicker(in.Interval)
			defer tick.Stop()
			for {
				m := measuring.Load()
				st := time.Now()
				good, reason := pf(context.WithoutCancel(pctx), u)
				d := time.Since(st).Seconds()
				if m {
					n.Add(1)
					mu.Lock()
					lat = append(lat, d)
					if good {
						ok.Add(1)
					} else if r := normalize(reason); len(res.Reasons) < 50 || res.Reasons[r] > 0 {
						res.Reasons[r]++
					}
					mu.Unlock()
				} else {
					warmN.Add(1)
					if good {
						warmOK.Add(1)
					}
				}
				select {
				case <-tick.C:
				case <-pctx.Done():
					return
				}
			}
		}()
	}
	wg.Wait()
	<-warmed
	res.CPU = (sysinfo.SelfCPU() - cpu0).Seconds()
	res.Wall = time.Since(t0).Seconds()
	res.Probes, res.Healthy = n.Load(), ok.Load()
	res.WarmupProbes, res.WarmupHealthy = warmN.Load(), warmOK.Load()
	res.Reused, res.Handshakes = reused.Load(), handshakes.Load()
	slices.Sort(lat)
	if len(lat) > 0 {
		res.P50 = lat[len(lat)/2]
		res.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return res, nil
}

// jsonCodeZero is the check the pulse module makes (JSON code == 0), the
// way a hand-written checker makes it.
func jsonCodeZero(b []byte) bool {
	var v struct {
		Code *int `json:"code"`
	}
	return json.Unmarshal(b, &v) == nil && v.Code != nil && *v.Code == 0
}

var portRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// normalize folds the target's port out of a failure reason so that the
// same failure on different targets counts as one reason.
func normalize(reason string) string { return portRE.ReplaceAllString(reason, "127.0.0.1:port") }
