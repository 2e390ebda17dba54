package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/store"
)

// appendRun is the outcome of n single-event Appends from writers
// goroutines.
type appendRun struct {
	rate     float64 // events per second
	p50, p99 time.Duration
	commits  uint64
}

// runAppends opens a fresh store with opts and times n single-event
// Appends spread over writers goroutines.
func runAppends(b *testing.B, opts Options, writers, n int) appendRun {
	b.Helper()
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), FileName), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var (
		next atomic.Uint64
		wg   sync.WaitGroup
		lats = make([][]time.Duration, writers)
		fail atomic.Pointer[error]
	)
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			for {
				seq := next.Add(1)
				if seq > uint64(n) {
					return
				}
				e := store.Event{Seq: seq, Time: time.Now(), Service: "svc", Instance: fmt.Sprintf("i-%d", w),
					From: "alive", To: "suspect", Reason: "phi=9.3 > 8; last beat 4.1s ago", Source: "passive"}
				t0 := time.Now()
				if err := s.Append(context.Background(), []store.Event{e}); err != nil {
					fail.Store(&err)
					return
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := fail.Load(); err != nil {
		b.Fatal(*err)
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	return appendRun{
		rate:    float64(n) / elapsed.Seconds(),
		p50:     all[len(all)/2],
		p99:     all[len(all)*99/100],
		commits: s.Stats().Commits,
	}
}

// baselineN is how many events the same-run baseline appends: enough for a
// stable rate, few enough that one transaction per event stays quick.
func baselineN(n int) int { return min(max(n, 200), 2000) }

func reportPair(b *testing.B, got, base appendRun, baseName string) {
	b.ReportMetric(got.rate, "events/s")
	b.ReportMetric(base.rate, baseName+"-events/s")
	b.ReportMetric(got.rate/base.rate, "x-vs-"+baseName)
	b.ReportMetric(float64(got.p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(got.p99.Microseconds()), "p99-µs")
	b.ReportMetric(float64(base.p50.Microseconds()), baseName+"-p50-µs")
	b.ReportMetric(float64(base.p99.Microseconds()), baseName+"-p99-µs")
	b.ReportMetric(float64(b.N)/float64(max(got.commits, 1)), "events/commit")
}

// BenchmarkAppend measures single-event Appends from concurrent writers
// with group commit (the default) against one transaction per Append (the
// same store with batching off), both with synchronous=FULL, in the same
// run. Latency percentiles are per Append, from call to acknowledgement.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			base := runAppends(b, Options{maxBatch1: true}, writers, baselineN(b.N))
			b.ResetTimer()
			got := runAppends(b, Options{}, writers, b.N)
			b.StopTimer()
			reportPair(b, got, base, "tx-per-event")
		})
	}
}

// BenchmarkAppendBatchDelay compares a 2 ms linger with none (the
// default), to justify the default.
func BenchmarkAppendBatchDelay(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			base := runAppends(b, Options{}, writers, baselineN(b.N))
			b.ResetTimer()
			got := runAppends(b, Options{BatchDelay: 2 * time.Millisecond}, writers, b.N)
			b.StopTimer()
			reportPair(b, got, base, "no-delay")
		})
	}
}

// BenchmarkAppendSyncNormal measures what synchronous=NORMAL would gain
// over FULL, to justify paying for FULL (docs/storage.md).
func BenchmarkAppendSyncNormal(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			base := runAppends(b, Options{}, writers, baselineN(b.N))
			b.ResetTimer()
			got := runAppends(b, Options{synchronous: "NORMAL"}, writers, b.N)
			b.StopTimer()
			reportPair(b, got, base, "full")
		})
	}
}
