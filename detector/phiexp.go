package detector

import (
	"errors"
	"math"
	"time"
)

// PhiExponential is Cassandra's failure detector, kept as a baseline:
// inter-arrival intervals are modelled as exponential with the mean of a
// sliding window (intervals longer than MaxInterval are not recorded, and
// the window starts with one Initial sample), so
// phi = (silence / mean) / ln 10.
//
// Suspicion scale: that phi; Threshold() is phi_convict_threshold (8), which
// at a 1 s interval means about 18 s of silence.
type PhiExponential struct {
	cfg     PhiExponentialConfig
	ring    []int64 // ns
	n, next int
	sum     int64
	last    time.Duration
	started bool
}

// PhiExponentialConfig parameterises PhiExponential; zero fields take
// Cassandra's defaults.
type PhiExponentialConfig struct {
	Threshold   float64       // 8
	Window      int           // 1000
	MaxInterval time.Duration // 2s
	Initial     time.Duration // 2s
}

// NewPhiExponential validates cfg and returns a PhiExponential detector.
func NewPhiExponential(cfg PhiExponentialConfig) (*PhiExponential, error) {
	if cfg.Threshold == 0 {
		cfg.Threshold = 8
	}
	if cfg.Window == 0 {
		cfg.Window = 1000
	}
	if cfg.MaxInterval == 0 {
		cfg.MaxInterval = 2 * time.Second
	}
	if cfg.Initial == 0 {
		cfg.Initial = 2 * time.Second
	}
	if !(cfg.Threshold > 0) || cfg.Window < 1 || cfg.MaxInterval <= 0 || cfg.Initial <= 0 {
		return nil, errors.New("detector: phi-exponential needs threshold > 0, window ≥ 1, max interval > 0, initial > 0")
	}
	p := &PhiExponential{cfg: cfg, ring: make([]int64, cfg.Window)}
	p.Reset()
	return p, nil
}

func (p *PhiExponential) Name() string       { return "phi-exp" }
func (p *PhiExponential) Threshold() float64 { return p.cfg.Threshold }

func (p *PhiExponential) Reset() {
	clear(p.ring)
	p.n, p.next, p.sum, p.last, p.started = 0, 0, 0, 0, false
}

func (p *PhiExponential) push(v int64) {
	if p.n == len(p.ring) {
		p.sum -= p.ring[p.next]
	} else {
		p.n++
	}
	p.ring[p.next] = v
	p.next = (p.next + 1) % len(p.ring)
	p.sum += v
}

func (p *PhiExponential) Observe(now, _ time.Duration) {
	switch {
	case !p.started:
		p.push(int64(p.cfg.Initial))
	case now-p.last <= p.cfg.MaxInterval:
		p.push(int64(now - p.last))
	}
	p.last, p.started = now, true
}

func (p *PhiExponential) Restart(now, _ time.Duration) {
	if !p.started {
		p.push(int64(p.cfg.Initial))
	}
	p.last, p.started = now, true
}

func (p *PhiExponential) mean() float64 { return float64(p.sum) / float64(p.n) }

func (p *PhiExponential) Deadline() time.Duration {
	if !p.started {
		return Never
	}
	return deadlineAfter(p.last, time.Duration(math.Ceil(p.cfg.Threshold*math.Ln10*p.mean())))
}

func (p *PhiExponential) Suspect(now time.Duration) bool { return now >= p.Deadline() }

func (p *PhiExponential) Suspicion(now time.Duration) float64 {
	if !p.started {
		return 0
	}
	return consistent(float64(now-p.last)/p.mean()/math.Ln10, p.cfg.Threshold, p.Suspect(now))
}

func (p *PhiExponential) AppendExplain(buf []byte, now time.Duration) []byte {
	buf = appendSilence(buf, p.started, now-p.last)
	if !p.started {
		return buf
	}
	buf = append(buf, "; phi "...)
	buf = appendFloat(buf, p.Suspicion(now), 1)
	buf = append(buf, " (threshold "...)
	buf = appendFloat(buf, p.cfg.Threshold, 1)
	buf = append(buf, ", mean interval "...)
	buf = appendSecs(buf, time.Duration(p.mean()))
	return append(buf, ')')
}

func (p *PhiExponential) Explain(now time.Duration) string { return string(p.AppendExplain(nil, now)) }
