package detector

import (
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	ms = time.Millisecond
	s  = time.Second
)

func mustAdaptive(t testing.TB, cfg AdaptiveConfig, l *PauseLedger) *AdaptiveParams {
	t.Helper()
	p, err := NewAdaptiveParams(cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// every returns one fresh instance of each detector at its defaults.
func every(t testing.TB) []Detector {
	t.Helper()
	f, err := NewFixed(3 * s)
	if err != nil {
		t.Fatal(err)
	}
	sf, err := NewSeedFix(SeedFixConfig{Interval: s})
	if err != nil {
		t.Fatal(err)
	}
	pn, err := NewPhiNormal(PhiNormalConfig{})
	if err != nil {
		t.Fatal(err)
	}
	pe, err := NewPhiExponential(PhiExponentialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return []Detector{NewAdaptive(mustAdaptive(t, DefaultAdaptiveConfig(s), nil)), f, sf, pn, pe}
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestFixedMaths(t *testing.T) {
	f, _ := NewFixed(3 * s)
	if f.Deadline() != Never || f.Suspect(time.Hour) || f.Suspicion(time.Hour) != 0 {
		t.Fatal("a detector that has seen nothing must not suspect")
	}
	f.Observe(10*s, 20*ms)
	cases := []struct {
		now     time.Duration
		level   float64
		suspect bool
	}{
		{10 * s, 0, false},
		{11500 * ms, 0.5, false},
		{13*s - 1, 1 - 1/3e9, false},
		{13 * s, 1, true},
		{16 * s, 2, true},
	}
	for _, c := range cases {
		if got := f.Suspicion(c.now); !near(got, c.level, 1e-9) {
			t.Errorf("Suspicion(%v) = %v, want %v", c.now, got, c.level)
		}
		if got := f.Suspect(c.now); got != c.suspect {
			t.Errorf("Suspect(%v) = %v", c.now, got)
		}
	}
	if f.Deadline() != 13*s {
		t.Errorf("Deadline = %v, want 13s", f.Deadline())
	}
	if _, err := NewFixed(0); err == nil {
		t.Error("NewFixed(0) accepted")
	}
}

func TestSeedFixMaths(t *testing.T) {
	sf, _ := NewSeedFix(SeedFixConfig{Interval: s})
	// Until the first recomputation (5 min after the first answer) the
	// seed's 3 s applies: the next answer is due at origin + 1 s + 3 s.
	sf.Observe(10*s, 20*ms)
	if want := 10*s - 20*ms + s + 3*s; sf.Deadline() != want {
		t.Fatalf("Deadline = %v, want %v", sf.Deadline(), want)
	}
	// 100 answers with RTTs 1..100 ms: P99 (nearest rank) is 99 ms, so
	// the timeout becomes 3×99 ms + 50 ms = 347 ms at the recomputation.
	now := 10 * s
	for i := 1; i <= 100; i++ {
		now += s
		sf.Observe(now, time.Duration(i)*ms)
	}
	now = 10*s + 5*time.Minute
	sf.Observe(now, 100*ms) // triggers the recomputation; window = 2..100,100
	if want := 3*100*ms + 50*ms; sf.timeout != want {
		t.Fatalf("timeout = %v, want %v (3×P99+50ms)", sf.timeout, want)
	}
	if want := now - 100*ms + s + sf.timeout; sf.Deadline() != want {
		t.Fatalf("Deadline = %v, want %v", sf.Deadline(), want)
	}
	// A step to 420 ms is not adopted until the next recomputation: the
	// answer 420 ms after a send is late (the flaw AP-01 exposed).
	sf.Observe(now+s, 420*ms)
	if !sf.Suspect(now + s + s + 500*ms) {
		t.Fatal("seedfix should miss a 420 ms answer with a 350 ms timeout")
	}
}

func TestPhiNormalMaths(t *testing.T) {
	pn, _ := NewPhiNormal(PhiNormalConfig{})
	pn.Observe(0, 0)
	// Akka's bootstrap history is {0.75 s, 1.25 s}: mean 1 s, std-dev
	// 0.25 s; the acceptable pause of 3 s shifts the mean to 4 s.
	cases := []struct {
		silence time.Duration
		phi     float64
	}{
		{4 * s, 0.30103},      // z=0: P=1/2
		{4500 * ms, 1.64302},  // z=2: P=0.02275
		{4750 * ms, 2.86966},  // z=3: P=0.00135
		{5 * s, 4.50086},      // z=4: P=3.167e-5
		{4*s + 1403*ms, 8.00}, // z≈5.612: threshold
	}
	for _, c := range cases[:5] {
		if got := pn.Suspicion(c.silence); !near(got, c.phi, 0.01) {
			t.Errorf("phi(%v) = %.5f, want %.5f", c.silence, got, c.phi)
		}
	}
	want := 4*s + time.Duration(math.Ceil(normalTailInverse(8)*float64(250*ms)))
	if pn.Deadline() != want || !near(normalTailInverse(8), 5.6120, 1e-3) {
		t.Fatalf("Deadline = %v, want %v (z*=%v)", pn.Deadline(), want, normalTailInverse(8))
	}
	// Exact tail and the asymptotic branch meet continuously at z=30.
	if d := normalPhi(30-1e-9) - normalPhi(30); math.Abs(d) > 0.01 {
		t.Errorf("normalPhi discontinuous at 30 by %v", d)
	}
	// Learning: ten 1 s intervals give mean (0.75+1.25+10)/12 = 1 s and
	// std-dev sqrt(0.125/12) = 102.06 ms.
	for i := 1; i <= 10; i++ {
		pn.Observe(time.Duration(i)*s, 0)
	}
	if pn.mean != s || (pn.std-102062*time.Microsecond).Abs() > time.Microsecond {
		t.Errorf("mean %v std %v, want 1s and 102.06ms", pn.mean, pn.std)
	}
}

func TestPhiExponentialMaths(t *testing.T) {
	pe, _ := NewPhiExponential(PhiExponentialConfig{})
	pe.Observe(0, 0)
	// The window starts with Cassandra's 2 s initial interval: phi =
	// t/(2 s · ln 10), so threshold 8 is reached after 36.84 s.
	if got := pe.Suspicion(2 * s); !near(got, 1/math.Ln10, 1e-12) {
		t.Errorf("phi(2s) = %v", got)
	}
	if want := time.Duration(math.Ceil(8 * math.Ln10 * 2e9)); pe.Deadline() != want {
		t.Errorf("Deadline = %v, want %v", pe.Deadline(), want)
	}
	// Three 1 s intervals: mean (2+1+1+1)/4 = 1.25 s. A 5 s interval is
	// above the 2 s cap and not recorded.
	for i := 1; i <= 3; i++ {
		pe.Observe(time.Duration(i)*s, 0)
	}
	pe.Observe(8*s, 0)
	if got := pe.mean(); got != 1.25e9 {
		t.Errorf("mean = %v, want 1.25s", got)
	}
}

func TestAdaptiveMaths(t *testing.T) {
	p := mustAdaptive(t, DefaultAdaptiveConfig(s), nil)
	var a Adaptive
	if a.Deadline(p) != Never || a.Suspect(p, time.Hour) || a.Suspicion(p, time.Hour) != 0 {
		t.Fatal("zero Adaptive must not suspect")
	}
	widen := 1 + 16.0/1024 // the start-up widening at its floor
	// Seeded with a 1 s interval and no jitter, delay or loss: the next
	// beat is expected at +1 s and the margin (1.5 s) is all the
	// allowance, so the deadline is 2.5 s (× the tiny start-up widening).
	a.Seed(p, Estimate{Interval: s}, 100*s)
	wantDead := 100*s + s + dur(1.5*widen)
	if a.Deadline(p) != wantDead {
		t.Fatalf("Deadline = %v, want %v", a.Deadline(p), wantDead)
	}
	cases := []struct {
		now time.Duration
		lvl float64
	}{
		{100 * s, 0},
		{101 * s, 0},                   // expected arrival
		{101750 * ms, 4 / widen},       // half the allowance
		{wantDead, 8},                  // the deadline
		{104 * s, 8 * 3 / 1.5 / widen}, // twice past it
	}
	for _, c := range cases {
		if got := a.Suspicion(p, c.now); !near(got, c.lvl, 1e-6) {
			t.Errorf("Suspicion(%v) = %v, want %v", c.now, got, c.lvl)
		}
	}
	if !a.Suspect(p, wantDead) || a.Suspect(p, wantDead-1) {
		t.Error("Suspect disagrees with Deadline")
	}

	// With 30 % loss the allowance is as many intervals as make a run of
	// losses that long a 10^-8 event: 8 / −log10(0.3) ≈ 15.3 intervals.
	a.Seed(p, Estimate{Interval: s, Loss: 0.3}, 0)
	allow := 8 / -fastLog10(0.3) * widen
	if !near(-fastLog10(0.3), -math.Log10(0.3), 0.03) {
		t.Fatalf("fastLog10(0.3) = %v", fastLog10(0.3))
	}
	if want := s + dur(allow); (a.Deadline(p) - want).Abs() > time.Microsecond {
		t.Errorf("lossy Deadline = %v, want %v", a.Deadline(p), want)
	}

	// Delay: the deadline follows the origin (arrival − rtt) plus SRTT.
	a.Seed(p, Estimate{Interval: s, RTT: 400 * ms}, 0)
	a.Observe(p, s+420*ms, 420*ms)
	// (SRTT adopts the step 400→420 ms at once: it exceeds twice the
	// spread, which is still zero.)
	if got, want := a.Deadline(p)-s, s+420*ms+dur(1.5*widen); (got - want).Abs() > 10*time.Microsecond { // float32 state
		t.Errorf("deadline − origin = %v, want %v (interval + SRTT + margin)", got, want)
	}
}

func TestAdaptiveAdoptsDelayStepAtOnce(t *testing.T) {
	p := mustAdaptive(t, DefaultAdaptiveConfig(s), nil)
	var a Adaptive
	now := time.Duration(0)
	for range 600 {
		now += s
		a.Observe(p, now, 20*ms)
	}
	before := a.Estimate()
	// One answer 420 ms late (AP-01's step): SRTT takes it at once.
	now += s + 400*ms
	a.Observe(p, now, 420*ms)
	after := a.Estimate()
	if after.RTT < 400*ms {
		t.Fatalf("SRTT %v after a step 20→420 ms; want the step adopted at once (before: %v)", after.RTT, before.RTT)
	}
	// Decay is slow: after 64 steady beats back at 20 ms SRTT is down
	// but the spread learned from the step is still well above zero.
	for range 64 {
		now += s
		a.Observe(p, now, 20*ms)
	}
	if e := a.Estimate(); e.RTT > 100*ms || e.RTTDev == 0 {
		t.Fatalf("after 64 beats: %+v", e)
	}
}

func TestAdaptiveFloorCeiling(t *testing.T) {
	cfg := DefaultAdaptiveConfig(s)
	cfg.Floor, cfg.Ceiling = 4*s, 5*s
	p := mustAdaptive(t, cfg, nil)
	var a Adaptive
	a.Seed(p, Estimate{Interval: s}, 0)
	if a.Deadline(p) != 4*s {
		t.Errorf("floor: Deadline = %v, want 4s", a.Deadline(p))
	}
	a.Seed(p, Estimate{Interval: s, Loss: 0.5}, 0)
	if a.Deadline(p) != 5*s {
		t.Errorf("ceiling: Deadline = %v, want 5s", a.Deadline(p))
	}
	for _, bad := range []AdaptiveConfig{{}, {Interval: s, Floor: 2 * s, Ceiling: s}, {Interval: s, Threshold: -1}, {Interval: s, Decay: -3}} {
		if _, err := NewAdaptiveParams(bad, nil); err == nil {
			t.Errorf("NewAdaptiveParams(%+v) accepted", bad)
		}
	}
}

func TestAdaptiveRestartKeepsHistory(t *testing.T) {
	p := mustAdaptive(t, DefaultAdaptiveConfig(s), nil)
	var a Adaptive
	now := time.Duration(0)
	for range 300 {
		now += s
		a.Observe(p, now, 10*ms)
	}
	before := a.Estimate()
	// The sender restarts after 90 s away: that gap is not learned from.
	now += 90 * s
	a.Restart(p, now, 10*ms)
	if got := a.Estimate(); got != before {
		t.Fatalf("restart changed the estimate: %+v → %+v", before, got)
	}
	if a.Suspect(p, now+2*s) {
		t.Fatal("restart must start the silence over")
	}
	// Whereas an ordinary 90 s gap is learned (as lost beats).
	var b Adaptive
	now = 0
	for range 300 {
		now += s
		b.Observe(p, now, 10*ms)
	}
	now += 90 * s
	b.Observe(p, now, 10*ms)
	if b.Estimate().Loss == 0 {
		t.Fatal("control: a 90 s gap should have been learned as loss")
	}
}

func TestAdaptiveSeedRoundTrip(t *testing.T) {
	p := mustAdaptive(t, DefaultAdaptiveConfig(2*s), nil)
	var a Adaptive
	r := rand.New(rand.NewPCG(1, 2))
	now := time.Duration(0)
	for range 500 {
		now += 2*s + time.Duration(r.IntN(100))*ms
		if r.Float64() < 0.1 {
			now += 2 * s
		}
		a.Observe(p, now, time.Duration(30+r.IntN(20))*ms)
	}
	est := a.Estimate()
	var b Adaptive
	b.Seed(p, est, now)
	got := b.Estimate()
	tol := func(x, y time.Duration) bool { return (x - y).Abs() <= time.Microsecond }
	if !tol(got.Interval, est.Interval) || !tol(got.Deviation, est.Deviation) || !tol(got.RTT, est.RTT) || !tol(got.RTTDev, est.RTTDev) || !near(got.Loss, est.Loss, 1e-6) {
		t.Fatalf("seeded %+v, stored %+v", got, est)
	}
	if est.Interval < 1900*ms || est.Interval > 2100*ms || est.Loss < 0.03 || est.Loss > 0.2 {
		t.Fatalf("estimate off: %+v", est)
	}
}

func TestAdaptiveSizeAndNoPointers(t *testing.T) {
	var a Adaptive
	if n := unsafe.Sizeof(a); n > 128 {
		t.Fatalf("Adaptive is %d bytes; the budget is 128 per instance", n)
	}
	ty := reflect.TypeOf(a)
	for i := range ty.NumField() {
		switch ty.Field(i).Type.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map, reflect.String, reflect.Interface, reflect.Func, reflect.Chan:
			t.Errorf("field %s holds a pointer: a []Adaptive would have to be scanned by the GC", ty.Field(i).Name)
		}
	}
	t.Logf("unsafe.Sizeof(Adaptive) = %d bytes", unsafe.Sizeof(a))
}

func TestExplain(t *testing.T) {
	l, _ := NewPauseLedger(0)
	p := mustAdaptive(t, DefaultAdaptiveConfig(s), l)
	a := NewAdaptive(p)
	if got := a.Explain(0); got != "nothing observed yet" {
		t.Errorf("Explain before any beat = %q", got)
	}
	a.State.Seed(p, Estimate{Interval: s, Deviation: 80 * ms, RTT: 20 * ms}, 0)
	l.Late(100*ms, 5100*ms)
	got := a.Explain(9 * s)
	for _, want := range []string{"no beat for 9.0s", "judge paused 5.0s, not counted", "expected ≤ ", "interval 1.0s ±0.080s", "delay 0.020s", "loss 0%", "suspicion "} {
		if !strings.Contains(got, want) {
			t.Errorf("Explain = %q; missing %q", got, want)
		}
	}
	for _, d := range every(t) {
		d.Observe(s, 10*ms)
		if e := d.Explain(5 * s); !strings.HasPrefix(e, "no beat for 4.0s") {
			t.Errorf("%s: Explain = %q", d.Name(), e)
		}
	}
}

// Properties every detector must have, over random arrival histories:
// suspicion is non-decreasing in silence, an arrival clears it, Suspect is
// exactly now ≥ Deadline and agrees with Suspicion ≥ Threshold, and the
// deadline is the exact instant of the change.
func TestProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, d := range every(t) {
		for trial := range 30 {
			d.Reset()
			now := time.Duration(r.IntN(1000)) * ms
			loss := r.Float64() * 0.5
			for range 400 {
				gap := s + time.Duration(r.NormFloat64()*float64(50*ms))
				for r.Float64() < loss {
					gap += s
				}
				now += max(gap, ms)
				rtt := time.Duration(r.IntN(300)) * ms
				d.Observe(now, rtt)
				if d.Suspect(now) {
					t.Fatalf("%s trial %d: suspect at the instant of an arrival", d.Name(), trial)
				}
				dl := d.Deadline()
				if dl <= now || d.Suspect(dl-1) || !d.Suspect(dl) {
					t.Fatalf("%s: deadline %v is not the exact change (now %v)", d.Name(), dl, now)
				}
				prev := -1.0
				for _, off := range []time.Duration{0, 100 * ms, s, dl - now - 1, dl - now, dl - now + 1, 2 * (dl - now), time.Hour} {
					at := now + off
					lvl := d.Suspicion(at)
					if lvl < prev || math.IsNaN(lvl) {
						t.Fatalf("%s: suspicion decreased or NaN: %v then %v at +%v", d.Name(), prev, lvl, off)
					}
					prev = lvl
					if (lvl >= d.Threshold()) != d.Suspect(at) || d.Suspect(at) != (at >= d.Deadline()) {
						t.Fatalf("%s: at +%v suspicion %v threshold %v suspect %v deadline +%v", d.Name(), off, lvl, d.Threshold(), d.Suspect(at), dl-now)
					}
				}
			}
		}
	}
}

func TestNoAllocations(t *testing.T) {
	buf := make([]byte, 0, 512)
	for _, d := range every(t) {
		now := time.Duration(0)
		d.Observe(now, 0)
		n := testing.AllocsPerRun(1000, func() {
			now += s
			d.Observe(now, 20*ms)
			_ = d.Suspicion(now + 2*s)
			_ = d.Suspect(now + 2*s)
			_ = d.Deadline()
			buf = d.AppendExplain(buf[:0], now+2*s)
		})
		if n != 0 {
			t.Errorf("%s: %v allocations per Observe+Suspicion+Suspect+Deadline+AppendExplain", d.Name(), n)
		}
	}
}

var sizeofAdaptive = unsafe.Sizeof(Adaptive{})

func TestAdaptiveReorderedBeatKeepsNewerOrigin(t *testing.T) {
	p := mustAdaptive(t, DefaultAdaptiveConfig(s), nil)
	var a Adaptive
	for i := 1; i <= 100; i++ {
		a.Observe(p, time.Duration(i)*s, 20*ms)
	}
	dl := a.Deadline(p)
	// A beat sent 2.5 s ago arrives now, after newer ones.
	a.Observe(p, 100*s+10*ms, 2510*ms)
	if a.Deadline(p) < dl {
		t.Fatalf("a reordered old beat moved the deadline earlier: %v → %v", dl, a.Deadline(p))
	}
}
