package detector

import (
	"errors"
	"math"
	"time"
)

// PhiNormal is the phi accrual failure detector of Hayashibara et al. as
// Akka configures it, kept as a baseline: inter-arrival intervals in a
// sliding window of Window samples are modelled as a normal distribution
// whose mean is shifted by AcceptablePause and whose standard deviation is
// at least MinStdDev.
//
// Suspicion scale: phi = −log10 P(an interval this long | alive), computed
// with the exact normal tail (Akka uses a logistic approximation of the same
// curve). Threshold() is the configured threshold (Akka's default 8).
// The window costs 8 KB per instance: that is the scaling problem Adaptive
// avoids.
type PhiNormal struct {
	cfg   PhiNormalConfig
	zStar float64 // z with normal tail 10^-threshold, solved once
	ring  []int32 // intervals in µs
	n     int
	next  int
	sum   int64 // µs
	sumSq int64 // µs²
	last  time.Duration
	// cached from the window at the last observation
	mean, std time.Duration
	started   bool
}

// PhiNormalConfig parameterises PhiNormal; zero fields take Akka's cluster
// defaults.
type PhiNormalConfig struct {
	Threshold       float64       // 8
	Window          int           // 1000
	MinStdDev       time.Duration // 100ms
	AcceptablePause time.Duration // 3s
	FirstEstimate   time.Duration // 1s: bootstrap mean (history starts as mean±mean/4)
}

// maxPhiInterval caps a recorded interval so µs sums cannot overflow.
const maxPhiInterval = 30 * time.Minute

// NewPhiNormal validates cfg and returns a PhiNormal detector.
func NewPhiNormal(cfg PhiNormalConfig) (*PhiNormal, error) {
	if cfg.Threshold == 0 {
		cfg.Threshold = 8
	}
	if cfg.Window == 0 {
		cfg.Window = 1000
	}
	if cfg.MinStdDev == 0 {
		cfg.MinStdDev = 100 * time.Millisecond
	}
	if cfg.AcceptablePause == 0 {
		cfg.AcceptablePause = 3 * time.Second
	}
	if cfg.FirstEstimate == 0 {
		cfg.FirstEstimate = time.Second
	}
	if !(cfg.Threshold > 0) || cfg.Threshold > 300 || cfg.Window < 2 || cfg.MinStdDev <= 0 || cfg.AcceptablePause < 0 || cfg.FirstEstimate <= 0 {
		return nil, errors.New("detector: phi-normal needs threshold in (0,300], window ≥ 2, min std-dev > 0, acceptable pause ≥ 0, first estimate > 0")
	}
	p := &PhiNormal{cfg: cfg, ring: make([]int32, cfg.Window), zStar: normalTailInverse(cfg.Threshold)}
	p.Reset()
	return p, nil
}

func (p *PhiNormal) Name() string       { return "phi-normal" }
func (p *PhiNormal) Threshold() float64 { return p.cfg.Threshold }

func (p *PhiNormal) Reset() {
	clear(p.ring)
	p.n, p.next, p.sum, p.sumSq, p.last, p.started = 0, 0, 0, 0, 0, false
	m := p.cfg.FirstEstimate
	p.push(m - m/4)
	p.push(m + m/4)
	p.stats()
}

func (p *PhiNormal) push(iv time.Duration) {
	iv = min(max(iv, 0), maxPhiInterval)
	us := int32(iv / time.Microsecond)
	if p.n == len(p.ring) {
		old := int64(p.ring[p.next])
		p.sum -= old
		p.sumSq -= old * old
	} else {
		p.n++
	}
	p.ring[p.next] = us
	p.next = (p.next + 1) % len(p.ring)
	p.sum += int64(us)
	p.sumSq += int64(us) * int64(us)
}

func (p *PhiNormal) stats() {
	n := float64(p.n)
	mean := float64(p.sum) / n
	variance := float64(p.sumSq)/n - mean*mean
	std := math.Sqrt(max(variance, 0))
	p.mean = time.Duration(mean * 1e3)
	p.std = max(time.Duration(std*1e3), p.cfg.MinStdDev)
}

func (p *PhiNormal) Observe(now, _ time.Duration) {
	if p.started {
		// As Akka does: the first beat after a suspicion is not learned
		// from, so one long pause does not skew the history.
		if !p.Suspect(now) {
			p.push(now - p.last)
			p.stats()
		}
	}
	p.last, p.started = now, true
}

func (p *PhiNormal) Restart(now, _ time.Duration) { p.last, p.started = now, true }

func (p *PhiNormal) Deadline() time.Duration {
	if !p.started {
		return Never
	}
	mean := p.mean + p.cfg.AcceptablePause
	return deadlineAfter(p.last, mean+time.Duration(math.Ceil(p.zStar*float64(p.std))))
}

func (p *PhiNormal) Suspect(now time.Duration) bool { return now >= p.Deadline() }

func (p *PhiNormal) Suspicion(now time.Duration) float64 {
	if !p.started {
		return 0
	}
	z := float64(now-p.last-p.mean-p.cfg.AcceptablePause) / float64(p.std)
	return consistent(normalPhi(z), p.cfg.Threshold, p.Suspect(now))
}

func (p *PhiNormal) AppendExplain(buf []byte, now time.Duration) []byte {
	buf = appendSilence(buf, p.started, now-p.last)
	if !p.started {
		return buf
	}
	buf = append(buf, "; phi "...)
	buf = appendFloat(buf, p.Suspicion(now), 1)
	buf = append(buf, " (threshold "...)
	buf = appendFloat(buf, p.cfg.Threshold, 1)
	buf = append(buf, ", mean "...)
	buf = appendSecs(buf, p.mean)
	buf = append(buf, ", std-dev "...)
	buf = appendSecs(buf, p.std)
	buf = append(buf, ", acceptable pause "...)
	buf = appendSecs(buf, p.cfg.AcceptablePause)
	return append(buf, ')')
}

func (p *PhiNormal) Explain(now time.Duration) string { return string(p.AppendExplain(nil, now)) }

// normalPhi is −log10 of the standard normal upper tail at z, finite and
// increasing for every z (an asymptotic expansion where erfc underflows).
func normalPhi(z float64) float64 {
	if z < 30 {
		t := 0.5 * math.Erfc(z/math.Sqrt2)
		return -math.Log10(t)
	}
	// log Q(z) ≈ −z²/2 − log(z√(2π)) (Mills ratio), accurate to <0.1% here.
	return (z*z/2 + math.Log(z*math.Sqrt(2*math.Pi))) / math.Ln10
}

// normalTailInverse returns z with normalPhi(z) = phi, by bisection.
func normalTailInverse(phi float64) float64 {
	lo, hi := -40.0, 40.0
	for range 200 {
		mid := (lo + hi) / 2
		if normalPhi(mid) < phi {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}
