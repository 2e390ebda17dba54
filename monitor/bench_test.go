package monitor

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/clock/clocktest"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// BenchmarkIngestToVerdict pushes beats for 1,000,000 registered instances
// through the verdict path (ObserveBatch: detector update, state check,
// wheel) on one goroutine, as ingest delivers them: batches of 64, with the
// judge's wheel visits included (one second of monitor time per pass). It
// reports observations per second, heap bytes per instance after GC, and
// allocations per beat. Goals: ≥ 1,000,000 obs/s on one core, ≤ 512 B per
// instance, 0 allocs per beat.
func BenchmarkIngestToVerdict(b *testing.B) {
	const n = 1_000_000
	clk := clocktest.NewFake(time.Time{})
	svc := passiveService("fleet", 0)
	svc.RegisterByBeats = true
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	m, err := New(Options{Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Apply(&Spec{Services: []ServiceSpec{svc}}); err != nil {
		b.Fatal(err)
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("inst-%07d", i)
	}
	obs := make([]ingest.Observation, 64)
	deliver := func(from, to int, at time.Time) {
		for i := from; i < to; i += len(obs) {
			k := min(len(obs), to-i)
			for j := range k {
				obs[j] = ingest.Observation{Service: "fleet", Instance: names[i+j], Source: ingest.Passive, Transport: wire.UDP,
					Epoch: 1, Seq: 1, ReceivedAt: at, Status: status.Healthy, Interval: time.Second}
			}
			m.ObserveBatch(obs[:k])
		}
	}
	// Register everyone, then a few rounds of beats so every instance is
	// alive with a learned interval: the steady state.
	for round := range 4 {
		clk.Advance(time.Second)
		deliver(0, n, clk.Now())
		_ = round
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	perInstance := float64(after.HeapAlloc-before.HeapAlloc) / n
	// names are the caller's (ingest interns them); don't charge them.
	perInstance -= float64(len(names[0]) + 16)

	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	start := time.Now()
	for b.Loop() {
		if i%n == 0 {
			// One second of monitor time per pass over the fleet: the judge
			// visits the instances whose (lazy) wheel entries came due.
			clk.Advance(time.Second)
			m.judgeDue(m.now())
		}
		k := min(len(obs), n-i%n)
		at := clk.Now()
		for j := range k {
			o := &obs[j]
			o.Instance = names[i%n+j]
			o.ReceivedAt = at
		}
		m.ObserveBatch(obs[:k])
		i += k
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(i)/elapsed.Seconds(), "obs/s")
	b.ReportMetric(perInstance, "heap-B/instance")
	b.ReportMetric(float64(i)/float64(b.N), "obs/op")
	sv, _ := m.Service("fleet")
	if sv.Counts["alive"] != n {
		b.Fatalf("not every instance alive: %+v", sv.Counts)
	}
}

// BenchmarkRegisterByBeats is the first beat of each of 1,000,000 new
// instances of a register_by_beats service (a fleet starting, or a monitor
// restarting without history): instance creation, the first verdict and
// its event. It reports registrations per second and allocations per
// registration.
func BenchmarkRegisterByBeats(b *testing.B) {
	const n = 1_000_000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("inst-%07d", i)
	}
	obs := make([]ingest.Observation, 64)
	b.ReportAllocs()
	var regs int
	var took time.Duration
	for b.Loop() {
		b.StopTimer()
		clk := clocktest.NewFake(time.Time{})
		svc := passiveService("fleet", 0)
		svc.RegisterByBeats = true
		m, err := New(Options{Clock: clk})
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Apply(&Spec{Services: []ServiceSpec{svc}}); err != nil {
			b.Fatal(err)
		}
		clk.Advance(time.Second)
		at := clk.Now()
		b.StartTimer()
		start := time.Now()
		for i := 0; i < n; i += len(obs) {
			k := min(len(obs), n-i)
			for j := range k {
				obs[j] = ingest.Observation{Service: "fleet", Instance: names[i+j], Source: ingest.Passive, Transport: wire.UDP,
					Epoch: 1, Seq: 1, ReceivedAt: at, Status: status.Healthy, Interval: time.Second}
			}
			m.ObserveBatch(obs[:k])
		}
		took += time.Since(start)
		regs += n
		b.StopTimer()
		sv, _ := m.Service("fleet")
		if sv.Counts["alive"] != n {
			b.Fatalf("not every instance alive: %+v", sv.Counts)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(regs)/took.Seconds(), "registrations/s")
	b.ReportMetric(float64(regs)/float64(b.N), "registrations/op")
}
