package dashtest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/goleak"

	"github.com/fb4b1dcc/pulse/api"
	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/internal/faultnet"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	beatKey   = "dashboard-test-key-0123456789"
	traceURL  = "http://127.0.0.1:16686/trace/{trace_id}"
	installCh = "apt-get install -y chromium"
)

// fleet is a running daemon with its senders and probe targets.
type fleet struct {
	t       *testing.T
	d       *daemon.Daemon
	base    string
	cancel  context.CancelFunc
	done    chan error
	tp      *sdktrace.TracerProvider
	key     *wire.Key
	mu      sync.Mutex
	senders map[string]*sender
	targets map[string]*httptest.Server
	relays  map[string]*faultnet.Relay
	token   string // sent on API reads when the API requires one
}

type sender struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *sender) stop() {
	s.cancel()
	<-s.done
}

// fleetSpec: which instances exist. checkout has two zones, beats and an
// HTTPS probe per instance; search registers by its beats, with no zone.
type fleetSpec struct {
	checkoutA, checkoutB int
	search               int
	tokens               []string
	relayed              []string // checkout instances whose beats go through a faultnet relay
}

func startFleet(t *testing.T, spec fleetSpec) *fleet {
	t.Helper()
	f := &fleet{t: t, senders: map[string]*sender{}, targets: map[string]*httptest.Server{}, relays: map[string]*faultnet.Relay{}}
	if len(spec.tokens) > 0 {
		f.token = spec.tokens[0]
	}
	// A real tracer (no exporter) so beats and probes carry trace ids the
	// page links to.
	f.tp = sdktrace.NewTracerProvider()
	var err error
	if f.key, err = wire.NewKey(1, []byte(beatKey)); err != nil {
		t.Fatal(err)
	}

	// HTTPS health endpoints, one per checkout instance; the probe trusts
	// their certificate through a CA file.
	var names []string
	zone := map[string]string{}
	for i := 1; i <= spec.checkoutA; i++ {
		n := fmt.Sprintf("checkout-a%d", i)
		names, zone[n] = append(names, n), "a"
	}
	for i := 1; i <= spec.checkoutB; i++ {
		n := fmt.Sprintf("checkout-b%d", i)
		names, zone[n] = append(names, n), "b"
	}
	var caFile string
	for _, n := range names {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"code":0,"status":"UP"}`)
		}))
		srv.Config.ErrorLog = nil
		srv.StartTLS()
		f.targets[n] = srv
		if caFile == "" {
			caFile = filepath.Join(t.TempDir(), "ca.pem")
			pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
			if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "api:\n  trace_url: %q\n", traceURL)
	if len(spec.tokens) > 0 {
		b.WriteString("  tokens:\n")
		for _, tok := range spec.tokens {
			fmt.Fprintf(&b, "    - value: %q\n", tok)
		}
	}
	b.WriteString(`defaults:
  verdict: {down_after: 500ms, recover_after: 2, startup_grace: 1s}
  protection: {suspect_share: 50%, min_group: 3}
`)
	if len(names) > 0 {
		fmt.Fprintf(&b, `modules:
  ready:
    kind: http
    timeout: 400ms
    tls: {ca_file: %q}
    conditions:
      expect: {status: 200, json: {code: 0}}
`, caFile)
	}
	b.WriteString("services:\n")
	if len(names) > 0 {
		fmt.Fprintf(&b, `  - name: checkout
    passive:
      interval: 200ms
      jitter: 20ms
      keys: [{id: 1, secret: {value: %s}}]
    active: [{module: ready, interval: 500ms}]
    instances:
`, beatKey)
		for _, n := range names {
			// The httptest certificate is for 127.0.0.1.
			fmt.Fprintf(&b, "      - {name: %s, zone: %s, target: %q, labels: {team: payments}}\n", n, zone[n], f.targets[n].URL+"/healthz")
		}
	}
	if spec.search > 0 {
		fmt.Fprintf(&b, `  - name: search
    register_by_beats: true
    passive:
      interval: 200ms
      jitter: 20ms
      keys: [{id: 1, secret: {value: %s}}]
`, beatKey)
	}
	cfg, err := config.Parse("dashtest.yaml", []byte(b.String()))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, b.String())
	}
	f.d, err = daemon.New(daemon.Options{Config: cfg, HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0",
		InMemory: true, TracerProvider: f.tp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done, f.base = cancel, make(chan error, 1), "http://"+f.d.HTTPAddr()
	go func() { f.done <- f.d.Run(ctx) }()
	<-f.d.Ready()

	relayed := map[string]bool{}
	for _, n := range spec.relayed {
		relayed[n] = true
	}
	for _, n := range names {
		f.startSender("checkout", n, relayed[n])
	}
	for i := 1; i <= spec.search; i++ {
		f.startSender("search", fmt.Sprintf("search-%d", i), false)
	}
	return f
}

func (f *fleet) startSender(service, instance string, relayed bool) {
	f.t.Helper()
	target := f.d.UDPAddr()
	if relayed {
		r, err := faultnet.New(faultnet.Config{Upstream: target, Seed: uint64(len(f.relays) + 1)})
		if err != nil {
			f.t.Fatal(err)
		}
		r.Start()
		f.relays[instance] = r
		target = r.Addr()
	}
	s, err := heartbeat.New(heartbeat.Config{Service: service, Instance: instance, Target: target, Key: f.key,
		Interval: 200 * time.Millisecond}, heartbeat.WithTracerProvider(f.tp))
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sd := &sender{cancel: cancel, done: make(chan struct{})}
	go func() { defer close(sd.done); s.Run(ctx) }()
	f.mu.Lock()
	f.senders[instance] = sd
	f.mu.Unlock()
}

// kill stops an instance the way a crash does: its beats stop and its
// health endpoint stops answering.
func (f *fleet) kill(instance string) {
	f.stopBeats(instance)
	if srv := f.targets[instance]; srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

// stopBeats stops only the instance's beats (its probe target still
// answers), as a network fault between it and the monitor would.
func (f *fleet) stopBeats(instances ...string) {
	var wg sync.WaitGroup
	for _, n := range instances {
		f.mu.Lock()
		s := f.senders[n]
		delete(f.senders, n)
		f.mu.Unlock()
		if s == nil {
			f.t.Fatalf("no sender %s", n)
		}
		wg.Add(1)
		go func() { defer wg.Done(); s.stop() }()
	}
	wg.Wait()
}

func (f *fleet) stop() {
	f.t.Helper()
	f.mu.Lock()
	senders := f.senders
	f.senders = map[string]*sender{}
	f.mu.Unlock()
	for _, s := range senders {
		s.stop()
	}
	for _, r := range f.relays {
		r.Close()
	}
	f.cancel()
	select {
	case err := <-f.done:
		if err != nil {
			f.t.Errorf("daemon: %v", err)
		}
	case <-time.After(30 * time.Second):
		f.t.Error("daemon did not stop within 30s")
	}
	for _, srv := range f.targets {
		srv.Close()
	}
	f.tp.Shutdown(context.Background())
}

var client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{}}}

// getJSON reads an API path (with the fleet's token, if any).
func (f *fleet) getJSON(path string, v any) {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.base+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	if f.token != "" {
		req.Header.Set("Authorization", "Bearer "+f.token)
	}
	resp, err := client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		f.t.Fatalf("GET %s: %s %s", path, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		f.t.Fatalf("GET %s: %v", path, err)
	}
}

func (f *fleet) services() []monitor.ServiceView {
	var out struct {
		Services []monitor.ServiceView `json:"services"`
	}
	f.getJSON("/api/v1/services", &out)
	return out.Services
}

func (f *fleet) instance(service, name string) monitor.InstanceView {
	var v monitor.InstanceView
	f.getJSON("/api/v1/services/"+service+"/instances/"+name, &v)
	return v
}

func (f *fleet) states(service string) map[string]string {
	var l api.InstanceList
	f.getJSON("/api/v1/services/"+service+"/instances", &l)
	out := map[string]string{}
	for _, in := range l.Instances {
		out[in.Instance] = in.State.String()
	}
	return out
}

// waitFor polls cond every 50ms until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", limit, what, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// browser is a headless chromium. Tabs are chromedp contexts.
type browser struct {
	ctx  context.Context
	once sync.Once
	stop func()
}

// close ends the browser (idempotent). Close it before the daemon stops:
// its open watch streams would hold the daemon's HTTP shutdown.
func (b *browser) close() { b.once.Do(b.stop) }

// startBrowser starts Debian's chromium headless, with no network access
// beyond loopback: the flags stop it from calling home (component
// updates, sync, background networking), and it gets a fresh profile.
// A missing chromium fails the test with the command that installs it.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	path := os.Getenv("PULSE_CHROMIUM")
	if path == "" {
		var err error
		if path, err = exec.LookPath("chromium"); err != nil {
			t.Fatalf("the dashboard test needs Debian's chromium and it is not installed: run `%s` (or set PULSE_CHROMIUM to a Chromium binary)", installCh)
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("font-render-hinting", "none"),
		chromedp.WindowSize(1280, 800),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	// Start the browser now, so a broken install fails here.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		bcancel()
		acancel()
		t.Fatalf("starting chromium (%s): %v; reinstall with `%s`", path, err, installCh)
	}
	return &browser{ctx: bctx, stop: func() { bcancel(); acancel() }}
}

// tab opens a new tab of the given viewport size.
func (b *browser) tab(t *testing.T, w, h int64) (context.Context, context.CancelFunc) {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(w, h)); err != nil {
		cancel()
		t.Fatal(err)
	}
	return ctx, cancel
}

// eval runs JavaScript in a tab and decodes its result.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// waitJS polls a JavaScript predicate in the page until it is true, and
// fails with what describe returns otherwise.
func waitJS(t *testing.T, ctx context.Context, limit time.Duration, what, pred, describe string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(()=>{try{return !!(`+pred+`)}catch(e){return false}})()`))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			got := ""
			if describe != "" {
				got, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`(()=>{try{return String(`+describe+`)}catch(e){return 'error: '+e}})()`))
			}
			t.Fatalf("timed out after %v waiting for %s (page: %s; err %v)", limit, what, got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shot saves a PNG of the tab under docs/img when PULSE_SCREENSHOTS is set.
func shot(t *testing.T, ctx context.Context, name string, full bool) {
	t.Helper()
	if os.Getenv("PULSE_SCREENSHOTS") == "" {
		return
	}
	// Let relative times tick and charts settle.
	time.Sleep(300 * time.Millisecond)
	var png []byte
	var err error
	if full {
		png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	} else {
		png, err = chromedp.Run(ctx, chromedp.CaptureScreenshot())
	}
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "..", "docs", "img")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", p, len(png))
}
