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
	// SIGHUP path: Reload re-reads; an unchanged good file is not re-applied.
	writeCfg(t, path, strings.Replace(goodCfg, "%s", "10s", 1))
	time.Sleep(300 * time.Millisecond)
	w.Reload()
	time.Sleep(300 * time.Millisecond)
	select {
	case c := <-applied:
		t.Fatalf("an unchanged configuration was applied again: %s", c.Hash)
	default:
	}
}

func TestWatcherApplyError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pulse.yaml")
	writeCfg(t, path, strings.Replace(goodCfg, "%s", "30s", 1))
	cur, _ := Load(path)
	w := NewWatcher(path, cur, func(*Config) error { return os.ErrPermission }, nil)
	writeCfg(t, path, strings.Replace(goodCfg, "%s", "5s", 1))
	w.try("test")
	if s := w.Stats(); s.Failures != 1 || w.Current() != cur {
		t.Fatalf("apply error not handled: %+v", s)
	}
}
