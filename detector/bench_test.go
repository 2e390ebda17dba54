package detector

import (
	"testing"
	"time"
)

// Benchmarks measure Adaptive and report its cost relative to PhiNormal
// timed in the same run (x-vs-phi-normal < 1 means Adaptive is faster).

// phiObserve times n PhiNormal observations with the same arrivals as
// BenchmarkObserve feeds Adaptive, called the same way (directly).
func phiObserve(pn *PhiNormal, n int) time.Duration {
	start := time.Now()
	now := time.Duration(0)
	for i := range n {
		now += s + time.Duration(i&63)*ms
		pn.Observe(now, 20*ms+time.Duration(i&7)*ms)
	}
	return time.Since(start)
}

func BenchmarkObserve(b *testing.B) {
	p := mustAdaptive(b, DefaultAdaptiveConfig(s), nil)
	var a Adaptive
	pn, _ := NewPhiNormal(PhiNormalConfig{})
	b.ReportAllocs()
	b.ResetTimer()
	now := time.Duration(0)
	for i := range b.N {
		now += s + time.Duration(i&63)*ms
		a.Observe(p, now, 20*ms+time.Duration(i&7)*ms)
	}
	b.StopTimer()
	adaptive := b.Elapsed()
	phi := phiObserve(pn, b.N)
	b.ReportMetric(float64(adaptive)/float64(phi), "x-vs-phi-normal")
}

func BenchmarkSuspicion(b *testing.B) {
	p := mustAdaptive(b, DefaultAdaptiveConfig(s), nil)
	var a Adaptive
	pn, _ := NewPhiNormal(PhiNormalConfig{})
	now := time.Duration(0)
	for i := range 2000 {
		now += s + time.Duration(i&63)*ms
		a.Observe(p, now, 20*ms)
		pn.Observe(now, 20*ms)
	}
	last := a.last
	var sink float64
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		sink += a.Suspicion(p, last+time.Duration(i&4095)*ms)
	}
	b.StopTimer()
	adaptive := b.Elapsed()
	start := time.Now()
	for i := range b.N {
		sink += pn.Suspicion(last + time.Duration(i&4095)*ms)
	}
	phi := time.Since(start)
	b.ReportMetric(float64(adaptive)/float64(phi), "x-vs-phi-normal")
	if sink < 0 {
		b.Fatal("unreachable")
	}
}

// BenchmarkDetectors times each detector's Observe+Deadline, the monitor's
// per-beat work.
func BenchmarkDetectors(b *testing.B) {
	for _, d := range every(b) {
		b.Run(d.Name(), func(b *testing.B) {
			b.ReportAllocs()
			now := time.Duration(0)
			var sink time.Duration
			for i := range b.N {
				now += s + time.Duration(i&63)*ms
				d.Observe(now, 20*ms)
				sink += d.Deadline()
			}
			if sink == 42 {
				b.Fatal("unreachable")
			}
		})
	}
}

// BenchmarkMillionInstances reports the heap cost of a million Adaptive
// states held by value, as the monitor holds them.
func BenchmarkMillionInstances(b *testing.B) {
	p := mustAdaptive(b, DefaultAdaptiveConfig(s), nil)
	for range b.N {
		states := make([]Adaptive, 1_000_000)
		for i := range states {
			states[i].Observe(p, time.Duration(i), 0)
		}
		b.ReportMetric(float64(cap(states))*float64(sizeofAdaptive)/1e6, "MB/1M-instances")
	}
}
