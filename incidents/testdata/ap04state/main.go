// Command ap04state runs AP-04's workload, concurrent writers and readers
// of a service's health flag, either through pulse's health package
// (-mode pulse) or through the seed's plain global bool (-mode seed). The
// incident replay builds it with -race, so the race detector judges both
// whatever flags the test suite itself was run with.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/fb4b1dcc/pulse/health"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// The seed's anti-pattern, verbatim.
var isHealthy = true // ❌ not safe for concurrent use

func SetHealthy(v bool) { isHealthy = v } // no synchronisation

func main() {
	mode := flag.String("mode", "pulse", "pulse or seed")
	writers := flag.Int("writers", 4, "")
	readers := flag.Int("readers", 4, "")
	n := flag.Int("n", 20000, "operations per goroutine")
	flag.Parse()

	var wg sync.WaitGroup
	var stop func()
	var reads, inconsistent int64
	var mu sync.Mutex
	count := func(r, bad int64) {
		mu.Lock()
		reads += r
		inconsistent += bad
		mu.Unlock()
	}
	switch *mode {
	case "seed":
		for w := range *writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range *n {
					SetHealthy((i+w)%2 == 0)
				}
			}()
		}
		for range *readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var up int64
				for range *n {
					if isHealthy {
						up++
					}
				}
				count(int64(*n), 0)
				_ = up
			}()
		}
	case "pulse":
		// The monitor's registry: beats written by ingest's goroutines,
		// read by the API's.
		stop = monitorWorkload(*writers, *readers, *n, count)
		h, err := health.New(health.Options{}, health.Check{Name: "db"})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		h.Set("db", nil)
		ready := h.ReadyHandler()
		for w := range *writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range *n {
					if (i+w)%2 == 0 {
						h.Set("db", nil)
					} else {
						h.Set("db", fmt.Errorf("w%d: connection refused", w))
					}
				}
			}()
		}
		for range *readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var bad int64
				var lastSeq uint64
				for i := range *n {
					s := h.Snapshot()
					c, _ := s.Check("db")
					healthy := c.Status == status.Healthy
					if s.Seq < lastSeq || s.Ready != healthy || healthy != (c.Err == "") ||
						(!healthy && !strings.HasSuffix(c.Err, ": connection refused")) {
						bad++
					}
					lastSeq = s.Seq
					if i%16 == 0 {
						rec := httptest.NewRecorder()
						ready.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
						if rec.Code != http.StatusOK && rec.Code != http.StatusServiceUnavailable {
							bad++
						}
					}
				}
				count(int64(*n), bad)
			}()
		}
	default:
		fmt.Fprintln(os.Stderr, errors.New("unknown mode"))
		os.Exit(2)
	}
	wg.Wait()
	if stop != nil {
		stop()
	}
	fmt.Printf("mode=%s reads=%d inconsistent=%d\n", *mode, reads, inconsistent)
}

// monitorWorkload runs a monitor with one service of 8 instances; writers
// feed beats through ObserveBatch (as ingest does), readers read the views
// (as the API does) and check that an instance's beat count never goes
// back and that the per-state counts add up to the fleet. The returned
// function waits for them and stops the monitor.
func monitorWorkload(writers, readers, n int, count func(r, bad int64)) func() {
	const instances = 8
	spec := &monitor.Spec{Services: []monitor.ServiceSpec{{
		Name:     "api",
		Passive:  monitor.PassiveSpec{Enabled: true, Interval: time.Second, Tokens: [][]byte{[]byte("token-0123456789abcdef")}},
		Detector: monitor.DetectorSpec{Type: "adaptive"},
		Verdict:  monitor.VerdictSpec{DownAfter: 2 * time.Second, RecoverAfter: 1, StartupGrace: 10 * time.Second},
	}}}
	for i := range instances {
		spec.Services[0].Instances = append(spec.Services[0].Instances, monitor.InstanceSpec{Name: fmt.Sprintf("i%d", i)})
	}
	m, err := monitor.New(monitor.Options{})
	if err == nil {
		err = m.Apply(spec)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := uint64(0)
			for i := range n / 8 {
				seq++
				inst := fmt.Sprintf("i%d", (w*2+i)%instances)
				m.ObserveBatch([]ingest.Observation{{Service: "api", Instance: inst, Source: ingest.Passive, Transport: wire.HTTP,
					Epoch: uint64(w + 1), Seq: seq, ReceivedAt: time.Now(), Status: status.Healthy, Interval: time.Second}})
			}
		}()
	}
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var bad int64
			last := map[string]uint64{}
			for range n / 8 {
				views, total, err := m.Instances("api", monitor.Filter{})
				if err != nil || total != instances {
					bad++
					continue
				}
				for _, v := range views {
					if v.Beats < last[v.Instance] {
						bad++
					}
					last[v.Instance] = v.Beats
				}
				sum := 0
				m.Counts(func(_, _ string, _ monitor.State, k int) { sum += k })
				if sum != instances {
					bad++
				}
			}
			count(int64(n/8), bad)
		}()
	}
	return func() {
		wg.Wait()
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
}
