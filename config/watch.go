package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watcher reloads a configuration file when it changes on disk (the
// directory is watched, because editors and config managers replace files
// rather than write them in place) or when Reload is called (SIGHUP). A new
// file is applied only if it loads and validates and apply accepts it;
// otherwise every error is logged with its file and line and the running
// configuration stays.
type Watcher struct {
	path     string
	apply    func(*Config) error
	log      *slog.Logger
	debounce time.Duration

	reload chan struct{}

	mu      sync.Mutex
	current *Config
	stats   ReloadStats
}

// ReloadStats counts reload outcomes (for metrics).
type ReloadStats struct {
	Successes, Failures uint64
	LastHash            string
	LastError           string
	LastAt              time.Time
}

// NewWatcher returns a Watcher for path whose configuration is current
// (already applied by the caller). It starts nothing; call Run.
func NewWatcher(path string, current *Config, apply func(*Config) error, log *slog.Logger) *Watcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{path: path, apply: apply, log: log, debounce: 100 * time.Millisecond,
		reload: make(chan struct{}, 1), current: current}
	if current != nil {
		w.stats.LastHash = current.Hash
	}
	return w
}

// Reload asks for a reload (from a SIGHUP handler). It never blocks.
func (w *Watcher) Reload() {
	select {
	case w.reload <- struct{}{}:
	default:
	}
}

// Current returns the configuration in force.
func (w *Watcher) Current() *Config {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current
}

// Stats returns reload counters.
func (w *Watcher) Stats() ReloadStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("config: watch: %w", err)
	}
	defer fw.Close()
	dir := filepath.Dir(w.path)
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("config: watch %s: %w", dir, err)
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-fw.Events:
			if !ok {
				return errors.New("config: file watcher closed")
			}
			// Any change in the directory may be ours: editors rename over
			// the file, and Kubernetes swaps a ..data symlink. The content
			// hash decides whether anything changed.
			// Coalesce the burst of events one save makes.
			timer.Reset(w.debounce)
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("config: file watcher closed")
			}
			w.log.Warn("config file watch error", "file", w.path, "err", err)
		case <-timer.C:
			w.try("file changed", false)
		case <-w.reload:
			// An explicit reload applies even an unchanged file: secrets
			// read from files or the environment may have changed.
			w.try("reload requested", true)
		}
	}
}

// try loads and applies the file once.
func (w *Watcher) try(why string, force bool) {
	c, err := Load(w.path)
	now := time.Now()
	if err != nil {
		w.fail(why, err, now)
		return
	}
	w.mu.Lock()
	same := w.current != nil && w.current.Hash == c.Hash
	w.mu.Unlock()
	if same && !force {
		return
	}
	if err := w.apply(c); err != nil {
		w.fail(why, err, now)
		return
	}
	w.mu.Lock()
	w.current = c
	w.stats.Successes++
	w.stats.LastHash, w.stats.LastError, w.stats.LastAt = c.Hash, "", now
	w.mu.Unlock()
	w.log.Info("configuration reloaded", "file", w.path, "why", why, "hash", c.Hash, "services", len(c.Spec.Services))
}

func (w *Watcher) fail(why string, err error, now time.Time) {
	w.mu.Lock()
	w.stats.Failures++
	w.stats.LastError, w.stats.LastAt = err.Error(), now
	keep := ""
	if w.current != nil {
		keep = w.current.Hash
	}
	w.mu.Unlock()
	fes := FieldErrors(err)
	if len(fes) == 0 {
		w.log.Error("configuration rejected; the running configuration stays", "file", w.path, "why", why, "err", err, "running_hash", keep)
		return
	}
	for _, fe := range fes {
		w.log.Error("configuration rejected; the running configuration stays", "file", fe.File, "line", fe.Line,
			"field", fe.Field, "err", fe.Msg, "why", why, "running_hash", keep)
	}
}
