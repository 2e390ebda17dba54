package detector

import (
	"errors"
	"time"
)

// Fixed suspects an instance once it has been silent for a constant timeout:
// the seed's hard-coded 3 s (AP-01). It is a baseline, kept to show what a
// static threshold costs.
//
// Suspicion scale: silence / Timeout, so Threshold() is 1.
type Fixed struct {
	timeout time.Duration
	last    time.Duration
	started bool
}

// DefaultFixedTimeout is the seed's constant.
const DefaultFixedTimeout = 3 * time.Second

// NewFixed returns a Fixed detector with the given timeout (> 0).
func NewFixed(timeout time.Duration) (*Fixed, error) {
	if timeout <= 0 {
		return nil, errors.New("detector: fixed timeout must be > 0 (e.g. 3s)")
	}
	return &Fixed{timeout: timeout}, nil
}

func (f *Fixed) Name() string       { return "fixed" }
func (f *Fixed) Threshold() float64 { return 1 }
func (f *Fixed) Reset()             { *f = Fixed{timeout: f.timeout} }

func (f *Fixed) Observe(now, _ time.Duration)   { f.last, f.started = now, true }
func (f *Fixed) Restart(now, rtt time.Duration) { f.Observe(now, rtt) }

func (f *Fixed) Deadline() time.Duration {
	if !f.started {
		return Never
	}
	return deadlineAfter(f.last, f.timeout)
}

func (f *Fixed) Suspect(now time.Duration) bool { return now >= f.Deadline() }

func (f *Fixed) Suspicion(now time.Duration) float64 {
	if !f.started {
		return 0
	}
	return consistent(float64(now-f.last)/float64(f.timeout), 1, f.Suspect(now))
}

func (f *Fixed) AppendExplain(buf []byte, now time.Duration) []byte {
	buf = appendSilence(buf, f.started, now-f.last)
	if !f.started {
		return buf
	}
	buf = append(buf, "; fixed timeout "...)
	return appendSecs(buf, f.timeout)
}

func (f *Fixed) Explain(now time.Duration) string { return string(f.AppendExplain(nil, now)) }
