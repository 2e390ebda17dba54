package config

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const goodCfg = "services:\n  - name: api\n    passive:\n      interval: %s\n      tokens: [{value: 0123456789abcdef}]\n"

func writeCfg(t *testing.T, path, body string) {
	t.Helper()
	// As editors do: write a temporary file and rename it over the old one.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// AP-10: a changed file reaches the monitor without a restart; a bad file
// is rejected with every error (file:line) logged and the old config kept.
func TestWatcherReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pulse.yaml")
	writeCfg(t, path, strings.Replace(goodCfg, "%s", "30s", 1))
	cur, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan *Config, 4)
	logs := &syncBuf{}
	w := NewWatcher(path, cur, func(c *Config) error { applied <- c; return nil },
		slog.New(slog.NewJSONHandler(logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(100 * time.Millisecond) // the watch is installed

	writeCfg(t, path, strings.Replace(goodCfg, "%s", "10s", 1))
	select {
	case c := <-applied:
		if iv := c.Spec.Services[0].Passive.Interval; iv != 10*time.Second {
			t.Fatalf("applied interval %v", iv)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a changed file was not applied within 5s")
	}

	writeCfg(t, path, "services:\n  - name: api\n    passive:\n      interval: 30\n      tokens: [{value: 0123456789abcdef}]\n    bogus: 1\n")
	deadline := time.Now().Add(5 * time.Second)
	for w.Stats().Failures == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if w.Stats().Failures != 1 {
		t.Fatal("a bad file was not rejected")
	}
	if got := w.Current().Spec.Services[0].Passive.Interval; got != 10*time.Second {
		t.Fatalf("running config changed to %v by a bad file", got)
	}
	out := logs.String()
	for _, want := range []string{`"line":4`, `needs a unit`, `"line":6`, `unknown field \"bogus\"`, `"running_hash":"` + w.Current().Hash} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %s:\n%s", want, out)
		}
	}
	// The file is restored: applied again (it differs from what failed, but
	// it equals the running config, so only an explicit reload applies it).
	writeCfg(t, path, strings.Replace(goodCfg, "%s", "10s", 1))
	time.Sleep(300 * time.Millisecond)
	select {
	case c := <-applied:
		t.Fatalf("an unchanged configuration was applied on a file event: %s", c.Hash)
	default:
	}
	// SIGHUP path: an explicit reload applies even an unchanged file.
	w.Reload()
	select {
	case <-applied:
	case <-time.After(5 * time.Second):
		t.Fatal("an explicit reload did not apply")
	}
}

func TestWatcherApplyError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pulse.yaml")
	writeCfg(t, path, strings.Replace(goodCfg, "%s", "30s", 1))
	cur, _ := Load(path)
	w := NewWatcher(path, cur, func(*Config) error { return os.ErrPermission }, nil)
	writeCfg(t, path, strings.Replace(goodCfg, "%s", "5s", 1))
	w.try("test", false)
	if s := w.Stats(); s.Failures != 1 || w.Current() != cur {
		t.Fatalf("apply error not handled: %+v", s)
	}
}

// Kubernetes mounts a ConfigMap as pulse.yaml → ..data/pulse.yaml and
// updates it by swapping the ..data symlink; the file itself never gets an
// event. The watcher must still notice.
func TestWatcherConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	v1, v2 := filepath.Join(dir, "..v1"), filepath.Join(dir, "..v2")
	os.Mkdir(v1, 0o755)
	os.Mkdir(v2, 0o755)
	os.WriteFile(filepath.Join(v1, "pulse.yaml"), []byte(strings.Replace(goodCfg, "%s", "30s", 1)), 0o644)
	os.WriteFile(filepath.Join(v2, "pulse.yaml"), []byte(strings.Replace(goodCfg, "%s", "5s", 1)), 0o644)
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pulse.yaml")
	if err := os.Symlink(filepath.Join("..data", "pulse.yaml"), path); err != nil {
		t.Fatal(err)
	}
	cur, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan *Config, 2)
	w := NewWatcher(path, cur, func(c *Config) error { applied <- c; return nil }, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(100 * time.Millisecond)
	// The kubelet's atomic swap: a new symlink renamed over ..data.
	os.Symlink("..v2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-applied:
		if iv := c.Spec.Services[0].Passive.Interval; iv != 5*time.Second {
			t.Fatalf("applied %v", iv)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a ConfigMap-style symlink swap was not noticed")
	}
}
