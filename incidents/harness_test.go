package incidents

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if builtPulse != "" {
			os.RemoveAll(filepath.Dir(builtPulse))
		}
	}))
}

// testKey is the HMAC secret of every passive service in the replays.
const testKey = "incident-key-0123456789abcdef"

// parseConfig builds a config from YAML; %KEY% is replaced by testKey.
func parseConfig(t testing.TB, yaml string) *config.Config {
	t.Helper()
	c, err := config.Parse("incident.yaml", []byte(strings.ReplaceAll(yaml, "%KEY%", testKey)))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

// monitorProc is a pulse monitor running in-process on ephemeral ports.
type monitorProc struct {
	D      *daemon.Daemon
	Base   string // http://host:port
	cancel context.CancelFunc
	done   chan error
}

// startMonitor runs `pulse serve` in-process (the daemon package is what
// the binary runs) with history in memory unless opts.DataDir is set.
func startMonitor(t testing.TB, opts daemon.Options) *monitorProc {
	t.Helper()
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = "127.0.0.1:0"
	}
	if opts.GRPCAddr == "" {
		opts.GRPCAddr = "127.0.0.1:0"
	}
	if opts.UDPAddr == "" {
		opts.UDPAddr = "127.0.0.1:0"
	}
	if opts.DataDir == "" {
		opts.InMemory = true
	}
	d, err := daemon.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &monitorProc{D: d, Base: "http://" + d.HTTPAddr(), cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- d.Run(ctx) }()
	<-d.Ready()
	t.Cleanup(p.Stop)
	return p
}

// Stop stops the monitor (idempotent).
func (p *monitorProc) Stop() {
	if p.cancel == nil {
		return
	}
	p.cancel()
	<-p.done
	p.cancel = nil
}

// Mon is the monitor inside.
func (p *monitorProc) Mon() *monitor.Monitor { return p.D.Monitor() }

// senders runs UDP heartbeat senders and stops them all on Stop.
type senders struct {
	mu   sync.Mutex
	runs map[string]*senderRun
}

type senderRun struct {
	S      *heartbeat.Sender
	cancel context.CancelFunc
	done   chan struct{}
}

func newSenders(t testing.TB) *senders {
	s := &senders{runs: map[string]*senderRun{}}
	t.Cleanup(s.StopAll)
	return s
}

// Start runs one sender for service/instance to target (host:port, UDP by
// default) with the shared key.
func (s *senders) Start(t testing.TB, cfg heartbeat.Config, opts ...heartbeat.Option) *heartbeat.Sender {
	t.Helper()
	if cfg.Key == nil && (cfg.Transport == wire.TransportUnknown || cfg.Transport == wire.UDP) {
		k, err := wire.NewKey(1, []byte(testKey))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Key = k
	}
	snd, err := heartbeat.New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &senderRun{S: snd, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); snd.Run(ctx) }()
	s.mu.Lock()
	s.runs[cfg.Service+"/"+cfg.Instance] = r
	s.mu.Unlock()
	return snd
}

// Stop kills one sender (a crash, from the monitor's point of view).
func (s *senders) Stop(service, instance string) {
	s.mu.Lock()
	r := s.runs[service+"/"+instance]
	delete(s.runs, service+"/"+instance)
	s.mu.Unlock()
	if r != nil {
		r.cancel()
		<-r.done
	}
}

// StopAll stops every sender.
func (s *senders) StopAll() {
	s.mu.Lock()
	runs := s.runs
	s.runs = map[string]*senderRun{}
	s.mu.Unlock()
	for _, r := range runs {
		r.cancel()
		<-r.done
	}
}

// waitFor polls cond every 20ms until it holds or limit passes.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// httpClient has a deadline on everything (AP-11 applies to tests too).
var httpClient = &http.Client{Timeout: 5 * time.Second}

var buildOnce sync.Once
var builtPulse string
var buildErr error

// pulseBinary builds cmd/pulse once per test run and returns its path.
func pulseBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pulse-incidents-")
		if err != nil {
			buildErr = err
			return
		}
		builtPulse = filepath.Join(dir, "pulse")
		out, err := exec.Command("go", "build", "-o", builtPulse, "../cmd/pulse").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/pulse: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtPulse
}
