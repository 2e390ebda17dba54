package sim

import (
	"math/rand/v2"
	"slices"
	"time"

	"github.com/fb4b1dcc/pulse/detector"
)

// Arrival is one beat (or probe answer) as the judge sees it.
type Arrival struct {
	At   time.Duration // judge's monotonic clock when observed
	RTT  time.Duration // its delay, as a detector is told
	Wall time.Duration // the judge's wall clock at the same moment (epoch offset)
}

// Pause is a half-open interval [Start, End) during which the judge did not
// run.
type Pause struct{ Start, End time.Duration }

// Trace is one monitored instance: what arrived, when it crashed, and when
// the judge itself was paused.
type Trace struct {
	Arrivals []Arrival
	Crash    time.Duration // NoCrash if it did not crash
	Pauses   []Pause
}

// NoCrash marks a trace whose instance did not crash while observed.
const NoCrash = detector.Never

// Scenario is a named, seeded trace generator.
type Scenario struct {
	Name    string
	Summary string
	// Control marks the scenario that must not trouble anyone (steady);
	// Guard marks one that guards a rule rather than stresses detectors
	// (clock-step). Neither has to make a baseline fail.
	Control, Guard bool
	// ZeroFalse: Adaptive at defaults must make no false suspicion here.
	ZeroFalse bool
	// Strict: Adaptive's QoS curve must be strictly below every
	// baseline's somewhere.
	Strict bool
	// Lowest: Adaptive's false rate must be the lowest of all detectors
	// at its own p99 T_D (loss and sender pauses, where a silence can
	// look exactly like a crash).
	Lowest bool
	gen    func(w *world)
}

// Hour is the length of one simulated instance trace.
const Hour = time.Hour

// world is the generation context of one instance.
type world struct {
	r        *rand.Rand
	interval time.Duration
	crash    time.Duration

	// knobs set by scenario functions
	senderPauses []Pause
	delay        func(t time.Duration) time.Duration // path delay for a send at t
	lost         func(t time.Duration) bool          // is a send at t lost?
	retransmit   bool
	judgePauses  []Pause
	wallSteps    []wallStep
}

type wallStep struct {
	At     time.Duration
	Offset time.Duration
}

func (w *world) uniform(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(w.r.Int64N(int64(hi-lo)+1))
}

// baseDelay is a lightly loaded path: 20 ms plus an exponential tail of
// mean 2 ms.
func (w *world) baseDelay() time.Duration {
	return 20*time.Millisecond + time.Duration(w.r.ExpFloat64()*float64(2*time.Millisecond))
}

// Scenarios returns every scenario in report order.
func Scenarios() []*Scenario {
	return []*Scenario{
		{Name: "steady", Summary: "1 s beats, ±20 ms sender jitter, 20 ms (+exp 2 ms) delay; the control", Control: true, ZeroFalse: true, gen: steady},
		{Name: "rtt-step", Summary: "delay steps 20 ms → 420 ± 80 ms for the middle third of the hour (AP-01)", ZeroFalse: true, Strict: true, gen: rttStep},
		{Name: "loss30", Summary: "30 % random loss plus loss bursts of 3–8 s, no retransmit (AP-13)", Strict: true, Lowest: true, gen: loss30(false)},
		{Name: "loss30-retx", Summary: "as loss30, with one retransmit 50–200 ms after a lost beat (AP-13)", Strict: true, Lowest: true, gen: loss30(true)},
		{Name: "sender-gc", Summary: "sender pauses of 0.5–2 s (a beat due during a pause leaves at its end)", Strict: true, Lowest: true, gen: senderGC},
		{Name: "judge-pause", Summary: "the judging process is paused 5 s once (beats queue, are read at resume)", ZeroFalse: true, Strict: true, gen: judgePause},
		{Name: "zone-slow", Summary: "850 ± 400 ms extra delay for two minutes (AP-16)", ZeroFalse: true, Strict: true, gen: zoneSlow},
		{Name: "clock-step", Summary: "the wall clock jumps +1 h and −1 h; monotonic time does not (AP-06)", Guard: true, ZeroFalse: true, gen: clockStep},
	}
}

// ScenarioByName finds a scenario.
func ScenarioByName(name string) (*Scenario, bool) {
	for _, s := range Scenarios() {
		if s.Name == name {
			return s, true
		}
	}
	return nil, false
}

func steady(w *world) {}

func rttStep(w *world) {
	lo, hi := Hour/3, 2*Hour/3
	w.delay = func(t time.Duration) time.Duration {
		if t >= lo && t < hi {
			return w.uniform(340*time.Millisecond, 500*time.Millisecond)
		}
		return w.baseDelay()
	}
}

// window picks a random interval of length d inside the hour, away from the
// first minutes so detectors have a history.
func (w *world) window(d time.Duration) (time.Duration, time.Duration) {
	s := w.uniform(5*time.Minute, Hour-d)
	return s, s + d
}

func loss30(retx bool) func(w *world) {
	return func(w *world) {
		w.retransmit = retx
		// Bursts: on average one every 20 minutes, 3–8 s of total loss.
		var bursts []Pause
		for t := w.expGap(20 * time.Minute); t < Hour; t += w.expGap(20 * time.Minute) {
			b := Pause{t, t + w.uniform(3*time.Second, 8*time.Second)}
			bursts = append(bursts, b)
			t = b.End
		}
		w.lost = func(t time.Duration) bool {
			if inPauses(bursts, t) {
				return true
			}
			return w.r.Float64() < 0.30
		}
	}
}

func (w *world) expGap(mean time.Duration) time.Duration {
	return time.Duration(w.r.ExpFloat64() * float64(mean))
}

func senderGC(w *world) {
	// GC pauses: on average one a minute, 0.5–2 s each.
	for t := w.expGap(time.Minute); t < Hour; t += w.expGap(time.Minute) {
		p := Pause{t, t + w.uniform(500*time.Millisecond, 2*time.Second)}
		w.senderPauses = append(w.senderPauses, p)
		t = p.End
	}
}

func judgePause(w *world) {
	s, e := w.window(5 * time.Second)
	w.judgePauses = []Pause{{s, e}}
}

func zoneSlow(w *world) {
	s, e := w.window(2 * time.Minute)
	w.delay = func(t time.Duration) time.Duration {
		d := w.baseDelay()
		if t >= s && t < e {
			d += w.uniform(450*time.Millisecond, 1250*time.Millisecond)
		}
		return d
	}
}

func clockStep(w *world) {
	w.wallSteps = []wallStep{{Hour / 3, time.Hour}, {2 * Hour / 3, 0}, {2*Hour/3 + time.Second, -time.Hour}}
}

func inPauses(ps []Pause, t time.Duration) bool {
	for _, p := range ps {
		if t >= p.Start && t < p.End {
			return true
		}
	}
	return false
}

// generate builds instance inst of scenario sc.
func generate(sc *Scenario, seed uint64, inst int, interval time.Duration) Trace {
	r := rand.New(rand.NewPCG(seed, hashName(sc.Name)^uint64(inst)*0x9e3779b97f4a7c15))
	w := &world{r: r, interval: interval}
	w.crash = w.uniform(Hour/10, Hour)
	sc.gen(w)
	if w.delay == nil {
		w.delay = func(time.Duration) time.Duration { return w.baseDelay() }
	}

	type send struct{ at, rtt time.Duration }
	var arr []send
	phase := w.uniform(0, interval)
	jit := interval / 50 // ±2 %: senders add jitter (AP-10)
	var lastSend time.Duration = -1
	for k := 0; ; k++ {
		t := phase + time.Duration(k)*interval + w.uniform(-jit, jit)
		// A sender pause defers the send to the pause's end; several
		// beats due in one pause leave as one (a ticker's buffer of 1).
		for _, p := range w.senderPauses {
			if t >= p.Start && t < p.End {
				t = p.End
			}
		}
		if t <= lastSend {
			continue
		}
		if t >= w.crash {
			break
		}
		lastSend = t
		if w.lost != nil && w.lost(t) {
			if !w.retransmit {
				continue
			}
			t += w.uniform(50*time.Millisecond, 200*time.Millisecond)
			if t >= w.crash || w.lost(t) {
				continue
			}
		}
		d := w.delay(t)
		arr = append(arr, send{t + d, d})
	}
	slices.SortFunc(arr, func(a, b send) int { return cmpDur(a.at, b.at) })

	tr := Trace{Crash: w.crash, Pauses: w.judgePauses}
	for _, a := range arr {
		tr.Arrivals = append(tr.Arrivals, Arrival{At: a.at, RTT: a.rtt})
	}
	// A paused judge reads what queued up when it resumes, 1 ms apart;
	// the delay it then measures includes the queueing.
	for _, p := range w.judgePauses {
		j := 0
		for i := range tr.Arrivals {
			a := &tr.Arrivals[i]
			if a.At >= p.Start && a.At < p.End {
				j++
				at := p.End + time.Duration(j)*time.Millisecond
				a.RTT += at - a.At
				a.At = at
			}
		}
	}
	slices.SortStableFunc(tr.Arrivals, func(a, b Arrival) int { return cmpDur(a.At, b.At) })
	for i := range tr.Arrivals {
		a := &tr.Arrivals[i]
		a.Wall = a.At
		for _, s := range w.wallSteps {
			if a.At >= s.At {
				a.Wall = a.At + s.Offset
			}
		}
	}
	return tr
}

func cmpDur(a, b time.Duration) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func hashName(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
