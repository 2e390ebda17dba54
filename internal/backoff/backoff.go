package backoff

import (
	"math"
	"math/rand/v2"
	"time"
)

// Policy describes an exponential back-off. The zero value is usable and
// means Default.
type Policy struct {
	Initial    time.Duration // bound of the first delay (default 100ms)
	Max        time.Duration // cap of the bound (default 30s)
	Multiplier float64       // growth per attempt (default 2)
	// Jitter in [0,1]: the share of the bound that is randomised. 1 (the
	// default, "full jitter") draws uniformly from [0, bound]; 0 returns the
	// bound itself, which tests use for exact arithmetic.
	Jitter *float64
}

// Defaults used when a Policy field is left zero.
const (
	defaultInitial    = 100 * time.Millisecond
	defaultMax        = 30 * time.Second
	defaultMultiplier = 2
)

// NoJitter is a convenience for Policy.Jitter.
func NoJitter() *float64 { z := 0.0; return &z }

func (p Policy) withDefaults() Policy {
	if p.Initial <= 0 {
		p.Initial = defaultInitial
	}
	if p.Max <= 0 {
		p.Max = defaultMax
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.Multiplier < 1 {
		p.Multiplier = defaultMultiplier
	}
	return p
}

// Bound returns the upper bound of the delay before retry number attempt
// (0-based): min(Max, Initial·Multiplier^attempt).
func (p Policy) Bound(attempt int) time.Duration {
	p = p.withDefaults()
	if attempt < 0 {
		attempt = 0
	}
	f := float64(p.Initial) * math.Pow(p.Multiplier, float64(attempt))
	if f >= float64(p.Max) || math.IsInf(f, 0) || math.IsNaN(f) {
		return p.Max
	}
	return time.Duration(f)
}

// Delay returns the jittered delay before retry number attempt. r is a
// uniform random number in [0,1); pass rand.Float64 in production and a
// fixed value in tests.
func (p Policy) Delay(attempt int, r float64) time.Duration {
	b := p.Bound(attempt)
	j := 1.0
	if p.Jitter != nil {
		j = min(max(*p.Jitter, 0), 1)
	}
	// The fixed part keeps a floor under the delay when jitter is partial.
	fixed := float64(b) * (1 - j)
	return time.Duration(fixed + float64(b)*j*r)
}

// Backoff tracks the attempt count of one retrying activity. It is not safe
// for concurrent use; its owner serialises access.
type Backoff struct {
	Policy  Policy
	attempt int
	rnd     func() float64
}

// New returns a Backoff for p using the global random source.
func New(p Policy) *Backoff { return &Backoff{Policy: p, rnd: rand.Float64} }

// Next returns the delay before the next retry and counts the attempt.
func (b *Backoff) Next() time.Duration {
	r := b.rnd
	if r == nil {
		r = rand.Float64
	}
	d := b.Policy.Delay(b.attempt, r())
	if b.attempt < 64 {
		b.attempt++
	}
	return d
}

// Attempt returns how many delays Next has handed out since the last Reset.
func (b *Backoff) Attempt() int { return b.attempt }

// Reset starts over after a success.
func (b *Backoff) Reset() { b.attempt = 0 }
