package detector

import (
	"math"
	"strconv"
	"time"
)

// Never is the deadline of a detector that will not turn suspect unless
// something changes (nothing observed yet).
const Never = time.Duration(math.MaxInt64)

// Detector is the common surface of every detector: what the simulator and
// the monitor's generic paths use. Adaptive is used by value with shared
// parameters for scale; AdaptiveDetector binds it to its parameters to
// satisfy this interface.
//
// Contract, for every implementation:
//   - Suspect(now) is exactly now >= Deadline(); Deadline changes only on
//     Observe, Restart, Reset or (for Adaptive) when the PauseLedger credits
//     a pause, which only moves it later.
//   - Suspicion(now) >= Threshold() exactly when Suspect(now); Suspicion is
//     non-decreasing in now between observations and continuous enough to
//     rank instances.
//   - Observe, Suspicion, Suspect and Deadline do not allocate.
type Detector interface {
	// Name is the detector's short name ("adaptive", "fixed", ...).
	Name() string
	// Observe records a beat arrival or a successful probe answer at now.
	// rtt is the answer time of a probe, or a beat's one-way delay as far
	// as the caller can measure it (0 if unknown).
	Observe(now, rtt time.Duration)
	// Restart records an arrival that starts a new sender epoch (the
	// sender restarted): the gap before it is not learned from, the
	// history is kept.
	Restart(now, rtt time.Duration)
	// Reset forgets everything, as if newly created.
	Reset()
	// Suspicion is the continuous suspicion level at now, on the scale
	// documented by the implementation; 0 before the first arrival.
	Suspicion(now time.Duration) float64
	// Threshold is the suspicion level at which the detector suspects.
	Threshold() float64
	// Suspect reports whether the instance is suspected at now.
	Suspect(now time.Duration) bool
	// Deadline is the instant at which the detector turns suspect if
	// nothing more arrives; Never before the first arrival.
	Deadline() time.Duration
	// AppendExplain appends a human-readable reason for the state at now.
	AppendExplain(buf []byte, now time.Duration) []byte
	// Explain is AppendExplain into a new string.
	Explain(now time.Duration) string
}

// consistent forces a continuous level to agree with the deadline-defined
// verdict where floating-point rounding could make them disagree by an ulp.
func consistent(level, threshold float64, suspect bool) float64 {
	if suspect {
		if !(level >= threshold) { // also catches NaN
			return threshold
		}
		return level
	}
	if level >= threshold {
		return math.Nextafter(threshold, math.Inf(-1))
	}
	if level < 0 || level != level {
		return 0
	}
	return level
}

// deadlineAfter returns base+d, saturating at Never.
func deadlineAfter(base, d time.Duration) time.Duration {
	if d >= Never-base {
		return Never
	}
	return base + d
}

// appendSecs appends d in seconds with a precision that suits its size
// ("4.1s", "0.08s", "420ms" style kept uniform in seconds).
func appendSecs(buf []byte, d time.Duration) []byte {
	s := d.Seconds()
	prec := 1
	switch a := math.Abs(s); {
	case a == 0:
		prec = 0
	case a < 0.1:
		prec = 3
	case a < 1:
		prec = 2
	}
	buf = strconv.AppendFloat(buf, s, 'f', prec, 64)
	return append(buf, 's')
}

func appendFloat(buf []byte, f float64, prec int) []byte {
	if math.IsInf(f, 1) {
		return append(buf, "inf"...)
	}
	return strconv.AppendFloat(buf, f, 'f', prec, 64)
}

// appendSilence appends the common start of an explanation.
func appendSilence(buf []byte, started bool, silence time.Duration) []byte {
	if !started {
		return append(buf, "nothing observed yet"...)
	}
	buf = append(buf, "no beat for "...)
	return appendSecs(buf, silence)
}

func secs(d time.Duration) float64 { return float64(d) / 1e9 }

func dur(s float64) time.Duration {
	if s >= float64(Never)/1e9 {
		return Never
	}
	if s <= 0 {
		return 0
	}
	return time.Duration(s * 1e9)
}
