package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/wire"
)

const reloadCfg = `services:
  - name: fleet
    register_by_beats: true
    passive:
      interval: INTERVAL
      jitter: 10ms
      keys: [{id: 1, secret: {value: ` + fleetKey + `}}]
`

// AP-10: the interval changes in the file; the running daemon reloads it
// and the next ACK carries it to the sender, which switches at once. A bad
// file afterwards changes nothing.
func TestReloadReachesSenders(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pulse.yaml")
	write := func(body string) {
		tmp := path + ".tmp"
		os.WriteFile(tmp, []byte(body), 0o644)
		os.Rename(tmp, path)
	}
	write(strings.Replace(reloadCfg, "INTERVAL", "1s", 1))
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	r := startDaemon(t, Options{Config: c, ConfigPath: path, InMemory: true})
	defer r.stop(t)

	key, _ := wire.NewKey(1, []byte(fleetKey))
	var mu sync.Mutex
	var sent []time.Time
	s, err := heartbeat.New(heartbeat.Config{Service: "fleet", Instance: "a", Target: r.d.UDPAddr(), Key: key,
		Interval: time.Second, OnResult: func(res heartbeat.Result) {
			mu.Lock()
			sent = append(sent, res.SentAt)
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(2500 * time.Millisecond)

	write(strings.Replace(reloadCfg, "INTERVAL", "200ms", 1))
	changedAt := time.Now()
	time.Sleep(3 * time.Second)
	mu.Lock()
	var after []time.Time
	for _, ts := range sent {
		if ts.After(changedAt.Add(1300 * time.Millisecond)) { // one old interval + reload debounce
			after = append(after, ts)
		}
	}
	mu.Unlock()
	if len(after) < 6 {
		t.Fatalf("%d beats in the 1.7s after the change reached the sender; want the 200ms interval (≈8)", len(after))
	}
	for i := 1; i < len(after); i++ {
		if gap := after[i].Sub(after[i-1]); gap > 400*time.Millisecond {
			t.Fatalf("gap %v between beats after the change to 200ms", gap)
		}
	}
	if d := r.d.mon.Directives("fleet", "a"); d.Interval != 200*time.Millisecond {
		t.Fatalf("directive %v", d)
	}
	// A bad file: the monitor keeps 200ms.
	write(strings.Replace(reloadCfg, "INTERVAL", "30", 1))
	time.Sleep(500 * time.Millisecond)
	if d := r.d.mon.Directives("fleet", "a"); d.Interval != 200*time.Millisecond {
		t.Fatalf("a bad file changed the directive to %v", d)
	}
}
