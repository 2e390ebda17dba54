package probe

// The fleet benchmark: many HTTPS targets probed at a fixed interval by one
// pooled Prober, against naive blackbox_exporter-style probing (a new
// http.Client and transport per probe) measured in the same run. Servers
// run in child processes (this test binary re-executed), so getrusage on
// this process counts the prober's CPU only.
//
//	go test -run '^$' -bench Fleet -benchtime 1x ./probe/                       # 1,000 targets, 10 s
//	go test -run '^$' -bench Fleet -benchtime 1x -timeout 30m ./probe/ \
//	    -fleet.targets 10000 -fleet.duration 60s                                 # the issue's figure

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/condition"
	"github.com/fb4b1dcc/pulse/status"
)

const (
	fleetServerEnv = "PULSE_FLEET_SERVER" // set: run as a fleet server child
	fleetCountEnv  = "PULSE_FLEET_COUNT"
	fleetCertEnv   = "PULSE_FLEET_CERT"
	fleetKeyEnv    = "PULSE_FLEET_KEY"
	perServer      = 4000 // listeners per child: 2 fds each with its pooled connection
)

var (
	fleetTargets  = flag.Int("fleet.targets", 1000, "fleet benchmark: HTTPS targets (listeners)")
	fleetDuration = flag.Duration("fleet.duration", 10*time.Second, "fleet benchmark: pooled probing time")
	fleetInterval = flag.Duration("fleet.interval", time.Second, "fleet benchmark: probe interval per target")
	fleetNaive    = flag.Int("fleet.naive", 300, "fleet benchmark: targets probed naively for the baseline")
	fleetNaiveDur = flag.Duration("fleet.naive-duration", 5*time.Second, "fleet benchmark: naive probing time")
	fleetHTTP1    = flag.Bool("fleet.http1", false, "fleet benchmark: HTTP/1.1 only")
	fleetBareDur  = flag.Duration("fleet.bare-duration", 10*time.Second, "fleet benchmark: bare pooled http.Client probing time (the floor)")
)

// fleetServerMain serves count HTTPS listeners until stdin closes. It
// prints each listener's address, then "ready"; on a "stats" line it prints
// "stats <tls handshakes> <tcp connections>".
func fleetServerMain() int {
	count, _ := strconv.Atoi(os.Getenv(fleetCountEnv))
	cert, err := tls.LoadX509KeyPair(os.Getenv(fleetCertEnv), os.Getenv(fleetKeyEnv))
	if err != nil || count <= 0 {
		fmt.Fprintln(os.Stderr, "fleet server: bad setup:", err, count)
		return 1
	}
	var handshakes, conns atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"code":0,"msg":"ok"}`)
		}),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				handshakes.Add(1)
				return nil, nil
			},
		},
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
		IdleTimeout: 5 * time.Minute,
		ErrorLog:    quietLog(),
	}
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for range count {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleet server: listen:", err)
			return 1
		}
		fmt.Fprintln(out, ln.Addr().String())
		wg.Add(1)
		go func() { defer wg.Done(); srv.ServeTLS(ln, "", "") }()
	}
	fmt.Fprintln(out, "ready")
	out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "stats" {
			fmt.Printf("stats %d %d\n", handshakes.Load(), conns.Load())
		}
	}
	srv.Close()
	wg.Wait()
	return 0
}

type fleetServer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	addrs []string
	once  sync.Once
	cpu   float64
}

// stop ends the child and returns the CPU seconds it used.
func (s *fleetServer) stop() float64 {
	s.once.Do(func() {
		s.stdin.Close()
		s.cmd.Wait()
		if ru, ok := s.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.cpu = float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6 + float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6
		}
	})
	return s.cpu
}

func (s *fleetServer) stats(b *testing.B) (handshakes, conns int64) {
	if _, err := io.WriteString(s.stdin, "stats\n"); err != nil {
		b.Fatal(err)
	}
	if !s.out.Scan() {
		b.Fatal("fleet server ended early")
	}
	var h, c int64
	if _, err := fmt.Sscanf(s.out.Text(), "stats %d %d", &h, &c); err != nil {
		b.Fatalf("fleet server said %q", s.out.Text())
	}
	return h, c
}

func startFleet(b *testing.B, targets int, certFile, keyFile string) []*fleetServer {
	var servers []*fleetServer
	for left := targets; left > 0; left -= perServer {
		n := min(left, perServer)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fleetServerEnv+"=1", fleetCountEnv+"="+strconv.Itoa(n),
			fleetCertEnv+"="+certFile, fleetKeyEnv+"="+keyFile)
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		s := &fleetServer{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
		b.Cleanup(func() { s.stop() })
		for s.out.Scan() && s.out.Text() != "ready" {
			s.addrs = append(s.addrs, s.out.Text())
		}
		if len(s.addrs) != n {
			b.Fatalf("fleet server started %d of %d listeners", len(s.addrs), n)
		}
		servers = append(servers, s)
	}
	return servers
}

func cpuSeconds(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func fleetHandshakes(b *testing.B, servers []*fleetServer) int64 {
	var total int64
	for _, s := range servers {
		h, _ := s.stats(b)
		total += h
	}
	return total
}

// schedule probes every url at interval, phases spread evenly, for d; it
// returns the number of probes and of healthy ones.
func schedule(urls []string, interval, d time.Duration, probe func(ctx context.Context, url string) bool) (probes, healthy int64) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	var n, ok atomic.Int64
	for i, u := range urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			phase := time.NewTimer(interval * time.Duration(i) / time.Duration(len(urls)))
			defer phase.Stop()
			select {
			case <-phase.C:
			case <-ctx.Done():
				return
			}
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				n.Add(1)
				if probe(context.WithoutCancel(ctx), u) {
					ok.Add(1)
				}
				select {
				case <-tick.C:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	wg.Wait()
	return n.Load(), ok.Load()
}

func BenchmarkFleet(b *testing.B) {
	targets := *fleetTargets
	p := newPKI(b)
	_, certPEM, keyPEM := p.issue(b, "fleet", false, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	dir := b.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		b.Fatal(err)
	}
	servers := startFleet(b, targets, certFile, keyFile)
	var urls []string
	for _, s := range servers {
		for _, a := range s.addrs {
			urls = append(urls, "https://"+a+"/healthz")
		}
	}
	module := Module{
		Kind: KindHTTP, Timeout: 2 * time.Second, Interval: *fleetInterval,
		TLS:           TLSClientConfig{CAPEM: p.caPEM},
		HTTP:          HTTPConfig{DisableHTTP2: *fleetHTTP1},
		Conditions:    condition.Spec{Expect: &condition.Expect{Status: 200, JSON: map[string]any{"code": 0}}},
		ExpiryWarning: -1,
	}
	naiveTLS := &tls.Config{RootCAs: x509.NewCertPool()}
	naiveTLS.RootCAs.AppendCertsFromPEM(p.caPEM)

	var served int64
	defer func() {
		var cpu float64
		for _, s := range servers {
			cpu += s.stop()
		}
		if served > 0 {
			b.Logf("server: %d requests, CPU %.2fs, %.4f CPU-s per 1,000 requests (client and server share this machine's 2 cores)",
				served, cpu, cpu/float64(served)*1000)
		}
	}()
	for range b.N {
		// Baseline: a new client and transport per probe, as
		// blackbox_exporter does.
		naiveURLs := urls[:min(*fleetNaive, len(urls))]
		h0, cpu0 := fleetHandshakes(b, servers), cpuSeconds(b)
		nProbes, nOK := schedule(naiveURLs, *fleetInterval, *fleetNaiveDur, naiveProbe(naiveTLS, *fleetHTTP1))
		nCPU, nHS := cpuSeconds(b)-cpu0, fleetHandshakes(b, servers)-h0

		// pulse: one pooled Prober for the whole fleet.
		pr, err := New(module)
		if err != nil {
			b.Fatal(err)
		}
		h0, cpu0 = fleetHandshakes(b, servers), cpuSeconds(b)
		var rmu sync.Mutex
		reasons := map[string]int{}
		bySec := map[int]int{}
		var retried atomic.Int64
		start := time.Now()
		pProbes, pOK := schedule(urls, *fleetInterval, *fleetDuration, func(ctx context.Context, u string) bool {
			r := pr.Probe(ctx, u)
			if r.Retried {
				retried.Add(1)
			}
			if r.Status != status.Healthy {
				rmu.Lock()
				reasons[r.Reason]++
				bySec[int(time.Since(start).Seconds())]++
				rmu.Unlock()
			}
			return r.Status == status.Healthy
		})
		wall := time.Since(start).Seconds()
		pCPU, pHS := cpuSeconds(b)-cpu0, fleetHandshakes(b, servers)-h0
		pr.Close()

		// The floor: one bare pooled http.Client for the whole fleet, same
		// check (status and JSON code), no phases, conditions or tracing.
		bare := bareProber(naiveTLS, *fleetHTTP1, *fleetInterval)
		cpu0 = cpuSeconds(b)
		bProbes, bOK := schedule(urls, *fleetInterval, *fleetBareDur, bare.probe)
		bCPU := cpuSeconds(b) - cpu0
		bare.close()
		bPer1k := bCPU / float64(bProbes) * 1000
		served += nProbes + pProbes + bProbes

		pPer1k := pCPU / float64(pProbes) * 1000
		nPer1k := nCPU / float64(nProbes) * 1000
		b.ReportMetric(pPer1k, "cpu-s/1k-probes")
		b.ReportMetric(nPer1k, "naive-cpu-s/1k-probes")
		b.ReportMetric(nPer1k/pPer1k, "x-vs-baseline")
		b.ReportMetric(bPer1k, "bare-cpu-s/1k-probes")
		b.ReportMetric(pPer1k/bPer1k, "x-vs-bare")
		b.ReportMetric(pCPU/wall, "cores")
		b.ReportMetric(float64(pHS)/float64(targets), "handshakes/target")
		b.ReportMetric(float64(pProbes)/wall, "probes/s")
		b.ReportMetric(float64(pOK)/float64(pProbes), "healthy-ratio")
		b.Logf("pooled: %d targets, %d probes in %.1fs (%.0f/s), %d healthy, CPU %.2fs = %.3f cores, %.4f CPU-s per 1,000 probes, %d TLS handshakes (%.3f per target)",
			targets, pProbes, wall, float64(pProbes)/wall, pOK, pCPU, pCPU/wall, pPer1k, pHS, float64(pHS)/float64(targets))
		b.Logf("naive:  %d targets, %d probes, %d healthy, CPU %.2fs, %.4f CPU-s per 1,000 probes, %d TLS handshakes; naive/pooled = %.1fx",
			len(naiveURLs), nProbes, nOK, nCPU, nPer1k, nHS, nPer1k/pPer1k)
		b.Logf("bare:   %d targets, %d probes, %d healthy, CPU %.2fs, %.4f CPU-s per 1,000 probes; pooled/bare = %.2fx",
			len(urls), bProbes, bOK, bCPU, bPer1k, pPer1k/bPer1k)
		if pOK != pProbes || nOK != nProbes {
			b.Errorf("unhealthy probes: pooled %d/%d, naive %d/%d healthy; %d retried; failures by second %v; top reasons %v", pOK, pProbes, nOK, nProbes, retried.Load(), bySec, topReasons(reasons, 8))
		}
	}
}

type bareClient struct {
	tr *http.Transport
	c  *http.Client
}

func bareProber(cfg *tls.Config, http1 bool, interval time.Duration) *bareClient {
	tr := &http.Transport{
		TLSClientConfig: cfg.Clone(), ForceAttemptHTTP2: !http1, DisableCompression: true,
		MaxIdleConnsPerHost: 2, IdleConnTimeout: 90*time.Second + 2*interval, TLSHandshakeTimeout: 2 * time.Second,
	}
	return &bareClient{tr: tr, c: &http.Client{Transport: tr, Timeout: 2 * time.Second}}
}

func (b *bareClient) close() { b.tr.CloseIdleConnections() }

func (b *bareClient) probe(ctx context.Context, u string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	resp, err := b.c.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, DefaultBodyLimit))
	if err != nil {
		return false
	}
	var v struct {
		Code int `json:"code"`
	}
	return resp.StatusCode == 200 && json.Unmarshal(body, &v) == nil && v.Code == 0
}

// naiveProbe is blackbox_exporter-style: build a client per probe, GET,
// read and judge the body, close the connection.
func naiveProbe(cfg *tls.Config, http1 bool) func(context.Context, string) bool {
	return func(ctx context.Context, u string) bool {
		tr := &http.Transport{
			TLSClientConfig:     cfg.Clone(),
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			TLSHandshakeTimeout: 2 * time.Second,
			ForceAttemptHTTP2:   !http1,
			DisableCompression:  true,
		}
		c := &http.Client{Transport: tr, Timeout: 2 * time.Second}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return false
		}
		resp, err := c.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, DefaultBodyLimit))
		if err != nil {
			return false
		}
		var v struct {
			Code int `json:"code"`
		}
		return resp.StatusCode == 200 && json.Unmarshal(body, &v) == nil && v.Code == 0 && !strings.Contains(string(body), "\x00")
	}
}

// BenchmarkHTTPSProbe measures one pooled probe (status and JSON conditions
// included) against a bare pooled http.Client GET of the same target in the
// same run: the prober's own overhead over net/http.
func BenchmarkHTTPSProbe(b *testing.B) {
	p := newPKI(b)
	for _, h2 := range []bool{true, false} {
		b.Run(fmt.Sprintf("http2=%v", h2), func(b *testing.B) {
			srv := newTLSServer(b, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"code":0,"msg":"ok"}`)
			}), h2)
			url := srv.URL + "/healthz"
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(p.caPEM)
			bare := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2, DisableCompression: true,
			}}
			defer bare.CloseIdleConnections()
			bareGet := func() {
				resp, err := bare.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var v struct{ Code int }
				if json.Unmarshal(body, &v) != nil || resp.StatusCode != 200 || v.Code != 0 {
					b.Fatal("bad answer")
				}
			}
			pr := mustNew(b, Module{Kind: KindHTTP, TLS: TLSClientConfig{CAPEM: p.caPEM}, HTTP: HTTPConfig{DisableHTTP2: !h2},
				Conditions: condition.Spec{Expect: &condition.Expect{Status: 200, JSON: map[string]any{"code": 0}}}})
			const base = 2000
			bareGet()
			start := time.Now()
			for range base {
				bareGet()
			}
			perBare := time.Since(start) / base
			b.ReportAllocs()
			b.ResetTimer()
			start = time.Now()
			for b.Loop() {
				if r := pr.Probe(context.Background(), url); r.Status != status.Healthy {
					b.Fatal(r.Reason)
				}
			}
			perProbe := time.Since(start) / time.Duration(b.N)
			b.ReportMetric(float64(perProbe)/float64(perBare), "x-vs-baseline")
		})
	}
}

// topReasons lists the n most frequent reasons, with counts.
func topReasons(m map[string]int, n int) []string {
	type kv struct {
		k string
		v int
	}
	var all []kv
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	var out []string
	for i := 0; i < len(all) && i < n; i++ {
		out = append(out, fmt.Sprintf("%d× %s", all[i].v, all[i].k))
	}
	return out
}
