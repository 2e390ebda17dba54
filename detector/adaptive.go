package detector

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// AdaptiveConfig is the user-facing configuration of pulse's Adaptive
// detector. Zero fields take the defaults shown.
type AdaptiveConfig struct {
	// Interval is the expected beat or probe interval; it seeds the
	// estimate until arrivals are learned from. Required.
	Interval time.Duration
	// Threshold is the suspicion level at which an instance is suspected
	// (8, as in phi accrual).
	Threshold float64
	// Margin is the silence tolerated beyond everything the recent history
	// explains, at threshold 8, when no loss has been seen: room for the
	// first instance of something new (a delay step, a sender pause).
	// Default 1.5s.
	Margin time.Duration
	// K multiplies the (peak) interval jitter and delay spread in the
	// allowance for the unexplained. Default 2.
	K float64
	// Floor and Ceiling bound the timeout (the allowed silence after the
	// last arrival). Defaults: Floor = Interval/2, Ceiling = 60 × Interval
	// but at least 60s.
	Floor, Ceiling time.Duration
	// Decay is the number of arrivals over which learned jitter, delay
	// spread and loss decay towards current behaviour (slowly: increases
	// are adopted at once); the envelope of silences decays over 8×Decay.
	// Default 64.
	Decay int
}

// AdaptiveParams is the validated, immutable form of AdaptiveConfig plus the
// judge's PauseLedger. One value is shared by every Adaptive state of a
// service (or of the whole monitor); swap the pointer to reconfigure.
type AdaptiveParams struct {
	cfg      AdaptiveConfig
	ledger   *PauseLedger
	interval float64 // s
	margin   float64 // s
	down     float64 // decay gain 1/Decay
	down8    float64 // envelope decay gain 1/(8·Decay)
	scale    float64 // Threshold/8
	floor    time.Duration
	ceiling  time.Duration
}

// DefaultAdaptiveConfig returns the defaults for a beat interval.
func DefaultAdaptiveConfig(interval time.Duration) AdaptiveConfig {
	return AdaptiveConfig{Interval: interval}
}

// NewAdaptiveParams validates cfg. ledger may be nil (no pause guard).
func NewAdaptiveParams(cfg AdaptiveConfig, ledger *PauseLedger) (*AdaptiveParams, error) {
	if cfg.Interval <= 0 {
		return nil, errors.New("detector: adaptive needs the expected interval (e.g. interval: 1s)")
	}
	if cfg.Threshold == 0 {
		cfg.Threshold = 8
	}
	if cfg.Margin == 0 {
		cfg.Margin = 1500 * time.Millisecond
	}
	if cfg.K == 0 {
		cfg.K = 2
	}
	if cfg.Floor == 0 {
		cfg.Floor = cfg.Interval / 2
	}
	if cfg.Ceiling == 0 {
		cfg.Ceiling = max(60*cfg.Interval, time.Minute)
	}
	if cfg.Decay == 0 {
		cfg.Decay = 64
	}
	switch {
	case !(cfg.Threshold > 0) || math.IsInf(cfg.Threshold, 0):
		return nil, fmt.Errorf("detector: adaptive threshold %v must be a positive number (8 is the default)", cfg.Threshold)
	case cfg.Margin < 0 || cfg.K < 0 || math.IsNaN(cfg.K):
		return nil, errors.New("detector: adaptive margin and K must be ≥ 0")
	case cfg.Floor <= 0 || cfg.Ceiling < cfg.Floor:
		return nil, fmt.Errorf("detector: adaptive floor %v must be > 0 and ≤ ceiling %v", cfg.Floor, cfg.Ceiling)
	case cfg.Decay < 1:
		return nil, errors.New("detector: adaptive decay must be ≥ 1 arrival")
	}
	p := &AdaptiveParams{
		cfg:      cfg,
		ledger:   ledger,
		interval: secs(cfg.Interval),
		down:     1 / float64(cfg.Decay),
		down8:    1 / float64(8*cfg.Decay),
		scale:    cfg.Threshold / 8,
		floor:    cfg.Floor,
		ceiling:  cfg.Ceiling,
	}
	p.margin = secs(cfg.Margin)
	return p, nil
}

// Config returns the effective configuration (defaults filled in).
func (p *AdaptiveParams) Config() AdaptiveConfig { return p.cfg }

// Ledger returns the pause ledger the parameters consult (may be nil).
func (p *AdaptiveParams) Ledger() *PauseLedger { return p.ledger }

// Adaptive is the per-instance state of pulse's own detector: 88 bytes, no
// pointers (a []Adaptive of a million instances is one noscan allocation),
// parameters passed in. The zero value is ready: nothing observed yet.
//
// Model (docs/detectors.md has the reasons). Each arrival has an origin:
// the instant it left the instance, now − rtt (the arrival itself when the
// delay is unknown). Origins are periodic; arrivals lag them by a delay. It
// learns the interval (slow EWMA), its jitter and the delay spread (peaks:
// an increase is adopted at once and decays over Decay arrivals), SRTT (a
// step up beyond the spread is adopted at once), the share of intervals
// with no arrival, and an envelope of silences a live instance has shown
// (late senders, loss bursts; decays over 8×Decay arrivals). Then
//
//	expected  e = origin + interval + SRTT
//	explained F = jitter + delay spread + envelope
//	unit      U = max(Margin, K·(jitter+spread) + 8·interval/−log10(loss)) · (1 + 16/n)
//	deadline    = e + (Threshold/8)·max(F, U)        (Threshold ≤ 8)
//	            = e + max(F, (Threshold/8)·U)        (Threshold > 8)
//
// clamped so the timeout after the last arrival is within [Floor, Ceiling].
// Suspicion is 8·x/max(F,U) for a silence x beyond e up to that, and 8·x/U
// beyond it: phi under an exponential tail, 8 at the default deadline. Time
// the judge was paused (PauseLedger) is not counted as silence, and
// arrivals held up by such a pause teach nothing.
type Adaptive struct {
	last   time.Duration // newest arrival
	origin time.Duration // its origin (last − rtt)
	paused time.Duration // ledger total at last
	dead   time.Duration // deadline − origin (before pause credit)

	mean   float64 // origin interval, s
	jitter float64 // peak deviation of the origin interval, s
	srtt   float64 // smoothed delay, s
	rttvar float64 // peak deviation of the delay, s
	loss   float64 // fraction of intervals with no arrival
	excess float64 // peak unexplained lateness, s
	// cached by update
	n uint32 // arrivals learned from (saturating)
}

// Estimate is what a monitor stores to seed a detector after its own
// restart, so it does not start from scratch.
type Estimate struct {
	Interval  time.Duration // mean interval between origins
	Deviation time.Duration // interval jitter (peak deviation)
	RTT       time.Duration // smoothed delay
	RTTDev    time.Duration // delay spread
	Loss      float64       // fraction of missing beats, 0..1
}

// Estimate returns the learned estimate (zero before the first arrival).
func (a *Adaptive) Estimate() Estimate {
	if a.n == 0 {
		return Estimate{}
	}
	return Estimate{
		Interval:  dur(float64(a.mean)),
		Deviation: dur(float64(a.jitter)),
		RTT:       dur(float64(a.srtt)),
		RTTDev:    dur(float64(a.rttvar)),
		Loss:      float64(a.loss),
	}
}

// Seed restores a stored estimate and starts the clock at now, as if an
// arrival had just been seen: a restarted monitor neither relearns from
// scratch nor condemns an instance before it had a chance to hear it.
func (a *Adaptive) Seed(p *AdaptiveParams, est Estimate, now time.Duration) {
	*a = Adaptive{}
	iv := est.Interval
	if iv <= 0 {
		iv = p.cfg.Interval
	}
	a.mean = float64(secs(iv))
	a.jitter = float64(secs(max(est.Deviation, 0)))
	a.srtt = float64(secs(max(est.RTT, 0)))
	a.rttvar = float64(secs(max(est.RTTDev, 0)))
	a.loss = float64(min(max(est.Loss, 0), 0.99))
	a.n = seededN
	a.last, a.origin = now, now
	a.observe(p, now, 0, true) // an arrival at now that teaches nothing
}

// seededN is the history length a seeded estimate counts as: long enough
// that the start-up widening (1 + 16/n) is negligible.
const seededN = 1024

// Reset forgets everything.
func (a *Adaptive) Reset() { *a = Adaptive{} }

// Observe records an arrival at now with the given delay (0 if unknown).
func (a *Adaptive) Observe(p *AdaptiveParams, now, rtt time.Duration) {
	a.observe(p, now, rtt, false)
}

// Restart records the first arrival of a new sender epoch: the history is
// kept, the gap before it is not learned from.
func (a *Adaptive) Restart(p *AdaptiveParams, now, rtt time.Duration) {
	a.observe(p, now, rtt, true)
}

func (a *Adaptive) observe(p *AdaptiveParams, now, rtt time.Duration, restart bool) {
	rtt = max(rtt, 0)
	origin := now - rtt
	r := float64(rtt) * 1e-9
	learned := true
	switch {
	case a.n == 0:
		a.mean = float64(p.interval)
		a.srtt, a.rttvar = r, r/2 // RFC 6298's first sample
	case origin < a.origin:
		learned = false
		// Sent before the newest arrival's origin (reordered): proof of
		// life now, but the newer origin stands.
		origin = a.origin
	case restart || p.ledger.inShadow(now, origin):
		// Nothing to learn from this gap.
		learned = false
	default:
		// Learn from the gap between origins. (Inline: this is the
		// per-beat hot path.)
		gap := float64(origin-a.origin) * 1e-9
		down := p.down
		mean := a.mean
		// Gain of the interval and loss estimates: 1/n while the history is
		// short, so they converge within a few dozen beats, then fixed.
		gain := float64(1.0 / 64)
		if a.n < 63 {
			gain = 1 / float64(a.n+1)
		}
		jmin := mean * 0.01 // jitter below 1 % of the interval is noise
		band := 3 * jmin
		if a.jitter > jmin {
			band = 3 * a.jitter
		}
		x := gap - mean
		missing := float64(0) // intervals with no arrival in this gap
		k := float64(1)
		switch {
		case abs32(x) <= band:
			// An ordinary interval. The mean settles slowly (1/64) once
			// known, so that it does not wander with every jittered beat.
			a.mean += x * gain
			a.jitter = peakHold(a.jitter, abs32(x), down)
		case gap > 1.5*mean:
			k = float64(math.Round(float64(gap / mean)))
			if res := gap - k*mean; abs32(res) <= band && k <= 1e6 {
				// Whole intervals missing: lost beats.
				missing = k - 1
				a.mean += (gap/k - mean) * gain
				a.jitter = peakHold(a.jitter, abs32(res)/k, down)
			} else {
				k = 1 // late, not lost: a sender pause
			}
			// However it came about, a silence this long happened to a
			// live instance: the envelope adopts it at once.
			a.excess = peakHold(a.excess, x-band, 0)
		default:
			// Early, or late by less than half an interval beyond the
			// band: not an interval sample, but evidence of wider jitter.
			a.excess = peakHold(a.excess, max(x-band, 0), 0)
			a.jitter = peakHold(a.jitter, min(abs32(x), 2*band), down)
		}
		// The envelope decays slowly: over 8×Decay arrivals.
		if a.excess > 0 {
			a.excess -= a.excess * p.down8
		}
		// Loss per interval: the gap spans k intervals, missing of them
		// empty (learned faster while the history is short, so a new
		// instance's estimate converges within a few dozen beats).
		if a.loss > 0 || missing > 0 {
			if gain < down {
				gain = down
			}
			a.loss += (missing - a.loss*k) * gain
			if a.loss < 1e-12 {
				a.loss = 0
			} else if a.loss > 0.99 {
				a.loss = 0.99
			}
		}
		// Delay: SRTT with gain 1/8, RTTVAR as a peak that decays slowly.
		// A step up beyond the spread is adopted into SRTT at once (AP-01:
		// the delay rose; it is not jitter).
		d := r - a.srtt
		if d > 2*a.rttvar+jmin {
			a.srtt = r
		} else {
			a.srtt += d / 8
			a.rttvar = peakHold(a.rttvar, abs32(d), down)
		}
	}
	if learned && a.n < math.MaxUint32 {
		a.n++ // the history the estimates rest on
	}
	a.last, a.origin, a.paused = now, origin, p.ledger.Total()

	// The deadline, relative to the origin (see Adaptive; shape has the
	// same arithmetic for Suspicion, kept inline here because this is the
	// per-beat hot path).
	e := a.mean + a.srtt
	peaks := a.jitter + a.rttvar
	explained := peaks + a.excess
	unit := p.margin
	if a.loss > 1e-9 {
		if u := p.cfg.K*peaks + 8*a.mean/-fastLog10(a.loss); u > unit {
			unit = u
		}
	}
	if a.n < 1024 {
		unit *= 1 + 16/float64(a.n)
	} else {
		unit *= 1 + 16.0/1024
	}
	// Up to threshold 8 everything beyond the expected arrival scales
	// with the threshold; above it, only the unit does (the explained
	// envelope is already covered). (Plain comparisons rather than the
	// builtin min/max, whose NaN handling lengthens Observe's critical
	// path; nothing here is NaN.)
	allow := explained
	if p.scale <= 1 {
		if unit > allow {
			allow = unit
		}
		allow *= p.scale
	} else if u := p.scale * unit; u > allow {
		allow = u
	}
	d := e + allow
	if d > 1e9 { // a deadline beyond 30 years is no deadline
		d = 1e9
	}
	// Clamp the timeout (silence after the last arrival).
	rtt = a.last - a.origin
	timeout := time.Duration(d*1e9) - rtt
	if timeout < p.floor {
		timeout = p.floor
	} else if timeout > p.ceiling {
		timeout = p.ceiling
	}
	a.dead = rtt + timeout
}

// peakHold adopts an increase at once and decays towards v with gain down.
func peakHold(cur, v, down float64) float64 {
	if v > cur {
		return v
	}
	return cur + (v-cur)*down
}

// shape returns the expected arrival after the origin, the explained
// silence beyond it and the unit (see Adaptive), all in seconds.
func (a *Adaptive) shape(p *AdaptiveParams) (e, explained, unit float64) {
	e = a.mean + a.srtt
	peaks := a.jitter + a.rttvar
	// Explained: silence the largest recent deviations and lateness
	// account for.
	explained = peaks + a.excess
	// Unit: the allowance for the unexplained at threshold 8. At least
	// the margin; with losses, as many intervals as make a run of losses
	// that long a 10^-8 event. Wider while the history is short (the
	// widening stops shrinking at 1 + 16/1024).
	unit = p.margin
	if a.loss > 1e-9 {
		if u := p.cfg.K*peaks + 8*a.mean/-fastLog10(a.loss); u > unit {
			unit = u
		}
	}
	if a.n < 1024 {
		unit *= 1 + 16/float64(a.n)
	} else {
		unit *= 1 + 16.0/1024
	}
	return e, explained, unit
}

// credit is the judge's pause time since the last arrival.
func (a *Adaptive) credit(p *AdaptiveParams) time.Duration {
	return p.ledger.Total() - a.paused
}

// Deadline is the instant at which the instance turns suspect if nothing
// more arrives, given the pauses credited so far (a later pause can only
// move it later).
func (a *Adaptive) Deadline(p *AdaptiveParams) time.Duration {
	if a.n == 0 {
		return Never
	}
	return deadlineAfter(a.origin+a.credit(p), a.dead)
}

// Suspect is exactly now >= Deadline(p).
func (a *Adaptive) Suspect(p *AdaptiveParams, now time.Duration) bool {
	return now >= a.Deadline(p)
}

// Suspicion is the continuous level at now: 0 until the expected arrival,
// then rising linearly to Threshold at the deadline (8 by default) and on
// beyond it; see Adaptive for its meaning. It is comparable across
// instances, so a monitor can rank them and count a zone's suspects.
func (a *Adaptive) Suspicion(p *AdaptiveParams, now time.Duration) float64 {
	if a.n == 0 {
		return 0
	}
	e, explained, unit := a.shape(p)
	x := secs(now-a.origin-a.credit(p)) - e
	lvl := 0.0
	if x > 0 {
		// 8x/V up to V = max(explained, unit), then 8x/U: the same
		// line when nothing is explained beyond the unit.
		u := unit
		if v := max(explained, u); x < v {
			lvl = 8 * x / v
		} else {
			lvl = 8 * x / u
		}
	}
	return consistent(lvl, p.cfg.Threshold, a.Suspect(p, now))
}

// AppendExplain appends a reason such as
// "no beat for 4.1s; expected ≤ 2.6s (interval 1.0s ±0.04s, delay 0.02s ±0.002s, loss 0%); suspicion 9.3/8".
func (a *Adaptive) AppendExplain(p *AdaptiveParams, buf []byte, now time.Duration) []byte {
	buf = appendSilence(buf, a.n > 0, now-a.last)
	if a.n == 0 {
		return buf
	}
	if c := a.credit(p); c > 0 {
		buf = append(buf, " (judge paused "...)
		buf = appendSecs(buf, c)
		buf = append(buf, ", not counted)"...)
	}
	buf = append(buf, "; expected ≤ "...)
	buf = appendSecs(buf, a.dead-(a.last-a.origin))
	buf = append(buf, " (interval "...)
	buf = appendSecs(buf, dur(float64(a.mean)))
	buf = append(buf, " ±"...)
	buf = appendSecs(buf, dur(float64(a.jitter)))
	buf = append(buf, ", delay "...)
	buf = appendSecs(buf, dur(float64(a.srtt)))
	buf = append(buf, " ±"...)
	buf = appendSecs(buf, dur(float64(a.rttvar)))
	buf = append(buf, ", loss "...)
	buf = appendFloat(buf, 100*float64(a.loss), 0)
	buf = append(buf, "%); suspicion "...)
	buf = appendFloat(buf, a.Suspicion(p, now), 1)
	buf = append(buf, '/')
	return appendFloat(buf, p.cfg.Threshold, 0)
}

// Explain is AppendExplain into a new string.
func (a *Adaptive) Explain(p *AdaptiveParams, now time.Duration) string {
	return string(a.AppendExplain(p, nil, now))
}

// AdaptiveDetector binds an Adaptive state to its parameters so that it
// satisfies Detector (for the simulator and generic code). A monitor with
// many instances keeps []Adaptive and one *AdaptiveParams instead.
type AdaptiveDetector struct {
	P     *AdaptiveParams
	State Adaptive
}

// NewAdaptive returns a bound Adaptive detector.
func NewAdaptive(p *AdaptiveParams) *AdaptiveDetector { return &AdaptiveDetector{P: p} }

func (d *AdaptiveDetector) Name() string                   { return "adaptive" }
func (d *AdaptiveDetector) Threshold() float64             { return d.P.cfg.Threshold }
func (d *AdaptiveDetector) Reset()                         { d.State.Reset() }
func (d *AdaptiveDetector) Observe(now, rtt time.Duration) { d.State.Observe(d.P, now, rtt) }
func (d *AdaptiveDetector) Restart(now, rtt time.Duration) { d.State.Restart(d.P, now, rtt) }
func (d *AdaptiveDetector) Deadline() time.Duration        { return d.State.Deadline(d.P) }
func (d *AdaptiveDetector) Suspect(now time.Duration) bool { return d.State.Suspect(d.P, now) }
func (d *AdaptiveDetector) Suspicion(now time.Duration) float64 {
	return d.State.Suspicion(d.P, now)
}
func (d *AdaptiveDetector) AppendExplain(buf []byte, now time.Duration) []byte {
	return d.State.AppendExplain(d.P, buf, now)
}
func (d *AdaptiveDetector) Explain(now time.Duration) string { return d.State.Explain(d.P, now) }

func abs32(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// fastLog10 is a cheap, monotonic approximation of log10 for x in (0, 1]
// (within 0.03): the loss rate is an estimate, so exactness buys nothing and
// Observe stays free of transcendental calls.
func fastLog10(x float64) float64 {
	frac, exp := math.Frexp(x) // x = frac·2^exp, frac in [0.5, 1)
	m := 2 * frac              // [1, 2)
	// log2(m) ≈ (m−1)(1.3466 − 0.3466 m)... quadratic through (1,0),(2,1).
	l2 := float64(exp-1) + (m-1)*(1.3466-0.3466*(m-1))
	return l2 * math.Log10(2)
}
