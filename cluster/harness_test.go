package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/fb4b1dcc/pulse/cluster/embedetcd"
	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/probe"
	"github.com/fb4b1dcc/pulse/store/memory"
	"github.com/fb4b1dcc/pulse/wire"
)

// The harness runs real nodes in one process: each is a monitor, a UDP
// ingest receiver, a gRPC server with the Cluster service and a Node,
// wired as internal/daemon wires them, against an embedded etcd on
// loopback. Beats come from real heartbeat senders over UDP; probes hit
// real HTTP servers.

const testTTL = 2 * time.Second

func startEtcd(t testing.TB) *embedetcd.Server {
	t.Helper()
	s, err := embedetcd.Start(embedetcd.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func etcdClient(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// logBuf collects a node's log lines for assertions and failure output.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type testNode struct {
	t    testing.TB
	id   string
	zone string
	log  *logBuf
	node *Node
	mon  *monitor.Monitor
	recv *ingest.Receiver
	gs   *grpc.Server

	stopFn func(cause error)
	wg     sync.WaitGroup
	killed bool

	mu     sync.Mutex
	events []monitor.Event
}

type nodeOpts struct {
	endpoint  string
	cfg       *config.Config
	newProber func(probe.Module) (probe.Prober, error)
	tweak     func(*Config)
	// noWait starts the monitor at once, as the daemon does when the node
	// has not joined within its start wait (etcd unreachable).
	noWait bool
}

func keyringOf(spec *monitor.Spec) (*wire.Keyring, error) {
	keys := map[string][]*wire.Key{}
	for _, s := range spec.Services {
		for id, secret := range s.Passive.Keys {
			k, err := wire.NewKey(id, secret)
			if err != nil {
				return nil, err
			}
			keys[s.Name] = append(keys[s.Name], k)
		}
	}
	return wire.NewKeyring(keys)
}

// startNode starts a node the way the daemon does: the cluster first,
// the monitor once the node has joined.
func startNode(t testing.TB, id, zone string, o nodeOpts) *testNode {
	t.Helper()
	tn := &testNode{t: t, id: id, zone: zone, log: &logBuf{}}
	logger := slog.New(slog.NewJSONHandler(tn.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.newProber == nil {
		o.newProber = func(m probe.Module) (probe.Prober, error) { return probe.New(m) }
	}
	cc := Config{Endpoints: []string{o.endpoint}, NodeID: id, Zone: zone, LeaseTTL: testTTL, Settle: 200 * time.Millisecond,
		Hold: 5 * time.Second, PublishInterval: 100 * time.Millisecond, Logger: logger, NewProber: o.newProber,
		Token: []byte("cluster-token-0123456789")}
	if o.tweak != nil {
		o.tweak(&cc)
	}
	var err error
	if tn.node, err = New(cc); err != nil {
		t.Fatal(err)
	}
	tn.mon, err = monitor.New(monitor.Options{Store: memory.New(), Logger: logger, Cluster: tn.node.Hooks(), NewProber: o.newProber})
	if err != nil {
		t.Fatal(err)
	}
	if err := tn.mon.Apply(&o.cfg.Spec); err != nil {
		t.Fatal(err)
	}
	keys, err := keyringOf(&o.cfg.Spec)
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tn.recv, err = ingest.New(ingest.Config{UDPConn: udp, Keys: keys, Sink: tn.mon, Directives: tn.mon.Directives})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tn.gs = grpc.NewServer()
	tn.node.Register(tn.gs)
	apply := func(c *config.Config) error {
		k, err := keyringOf(&c.Spec)
		if err != nil {
			return err
		}
		if err := tn.mon.Apply(&c.Spec); err != nil {
			return err
		}
		tn.recv.SetKeys(k)
		return nil
	}
	if err := tn.node.Attach(tn.mon, ln.Addr().String(), "", udp.LocalAddr().String(), o.cfg, apply); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	mctx, stopMon := context.WithCancel(context.Background())
	rctx, stopRecv := context.WithCancel(context.Background())
	tn.wg.Add(1)
	nodeDone := make(chan struct{})
	go func() { defer tn.wg.Done(); defer close(nodeDone); tn.node.Run(ctx) }()
	if !o.noWait {
		select {
		case <-tn.node.Synced():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not join within 10s:\n%s", id, tn.log)
		}
	}
	monDone := make(chan struct{})
	tn.wg.Add(3)
	go func() { defer tn.wg.Done(); defer close(monDone); tn.mon.Run(mctx) }()
	go func() { defer tn.wg.Done(); tn.recv.Run(rctx) }()
	go func() { defer tn.wg.Done(); tn.gs.Serve(ln) }()
	w := tn.mon.Watch(0)
	tn.wg.Add(1)
	go func() {
		defer tn.wg.Done()
		for range w.C() {
			evs, _ := w.Next(nil, 1<<16)
			tn.mu.Lock()
			tn.events = append(tn.events, evs...)
			tn.mu.Unlock()
		}
	}()
	// stop tears the node down in the daemon's order: the gRPC server,
	// then ingest and the monitor, then the cluster part (which revokes the
	// lease unless the stop is a crash).
	tn.stopFn = func(cause error) {
		tn.gs.Stop()
		stopRecv()
		stopMon()
		<-monDone
		cancel(cause)
		<-nodeDone
		w.Close()
		tn.wg.Wait()
	}
	t.Cleanup(func() { tn.stop(context.Canceled) })
	return tn
}

func (tn *testNode) stop(cause error) {
	if tn.killed {
		return
	}
	tn.killed = true
	tn.stopFn(cause)
}

// crash stops the node without revoking its lease, as a killed process.
func (tn *testNode) crash() { tn.stop(ErrCrash) }

func (tn *testNode) state(service, instance string) monitor.InstanceView {
	v, err := tn.mon.Instance(service, instance)
	if err != nil {
		tn.t.Fatalf("%s: %v", tn.id, err)
	}
	return v
}

// eventsTo returns the instance events with state to (any instance).
func (tn *testNode) eventsTo(to string) []monitor.Event {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	var out []monitor.Event
	for _, e := range tn.events {
		if e.Instance != "" && e.To == to {
			out = append(out, e)
		}
	}
	return out
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool, explain ...func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			for _, f := range explain {
				t.Log(f())
			}
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// webServers starts n HTTP targets (one listener each: a prober keeps at
// most two connections per host, as it should for real targets) that
// answer 200 {"code":0} on every path.
func webServers(t testing.TB, n int) (addrs []string, stop func()) {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"code":0}`))
	}), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, ln.Addr().String())
		wg.Add(1)
		go func() { defer wg.Done(); srv.Serve(ln) }()
	}
	var once sync.Once
	stop = func() { once.Do(func() { srv.Close(); wg.Wait() }) }
	t.Cleanup(stop)
	return addrs, stop
}

// webServer is one target.
func webServer(t testing.TB) (addr string, stop func()) {
	t.Helper()
	addrs, stop := webServers(t, 1)
	return addrs[0], stop
}

func newSecret() string {
	b := make([]byte, 24)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// fleetYAML renders a configuration: passive instances (name → zone) and
// active ones (name → zone, target URL).
type fleet struct {
	secret  string
	passive []inst
	active  []inst
	extra   string // appended services
	// noProtection turns protection off for the active service, so that
	// multi-vantage confirmation is the only guard under test.
	noProtection bool
}

type inst struct{ name, zone, target string }

func (f *fleet) yaml() string {
	var b strings.Builder
	b.WriteString(`profile: lan
defaults:
  verdict: {down_after: 2s, recover_after: 3, retries: 1, startup_grace: 3s}
modules:
  web:
    kind: http
    timeout: 500ms
services:
`)
	if len(f.passive) > 0 {
		fmt.Fprintf(&b, "  - name: beats\n    passive: {interval: 1s, jitter: 100ms, keys: [{id: 1, secret: {value: %s}}]}\n    instances:\n", f.secret)
		for _, in := range f.passive {
			fmt.Fprintf(&b, "      - {name: %s, zone: %s}\n", in.name, in.zone)
		}
	}
	if len(f.active) > 0 {
		b.WriteString("  - name: web\n    active: [{module: web, interval: 1s}]\n")
		if f.noProtection {
			b.WriteString("    protection: {disabled: true}\n")
		}
		b.WriteString("    instances:\n")
		for _, in := range f.active {
			fmt.Fprintf(&b, "      - {name: %s, zone: %s, target: %q}\n", in.name, in.zone, in.target)
		}
	}
	b.WriteString(f.extra)
	return b.String()
}

func (f *fleet) config(t testing.TB) *config.Config {
	t.Helper()
	c, err := config.Parse("test.yaml", []byte(f.yaml()))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, f.yaml())
	}
	return c
}

// senders runs one heartbeat sender per passive instance, to the UDP
// address target(i) picks.
type senders struct {
	mu   sync.Mutex
	stop map[string]func()
}

func startSenders(t testing.TB, f *fleet, target func(i int) string) *senders {
	t.Helper()
	return startSendersTo(t, f, "beats", target)
}

func startSendersTo(t testing.TB, f *fleet, service string, target func(i int) string) *senders {
	t.Helper()
	key, err := wire.NewKey(1, []byte(f.secret))
	if err != nil {
		t.Fatal(err)
	}
	s := &senders{stop: map[string]func(){}}
	for i, in := range f.passive {
		hb, err := heartbeat.New(heartbeat.Config{Service: service, Instance: in.name, Target: target(i), Key: key, Interval: time.Second},
			heartbeat.WithSeed(uint64(i+1)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); hb.Run(ctx) }()
		var once sync.Once
		s.stop[in.name] = func() { once.Do(func() { cancel(); <-done }) }
	}
	t.Cleanup(s.stopAll)
	return s
}

func (s *senders) kill(name string) {
	s.mu.Lock()
	f := s.stop[name]
	s.mu.Unlock()
	f()
}

func (s *senders) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.stop {
		f()
	}
}
