package detector

import (
	"errors"
	"slices"
	"time"
)

// SeedFix is the seed's own fix for AP-01, kept as a baseline: a per-answer
// timeout of Multiplier × P99(RTT) + Slack over the last Window RTT samples,
// recomputed only every Every. The next answer is expected by the time the
// next beat or probe is sent (the last one's origin plus Interval) plus that
// timeout. It reacts to a step in delay only at the next recomputation,
// which is the flaw the incident exposed.
//
// Suspicion scale: (now − expected send of the next answer) / timeout, so
// Threshold() is 1.
type SeedFix struct {
	cfg      SeedFixConfig
	ring     [seedFixMaxWindow]time.Duration
	scratch  [seedFixMaxWindow]time.Duration
	n        int // samples stored (≤ Window)
	next     int // ring write index
	timeout  time.Duration
	recompAt time.Duration
	last     time.Duration
	origin   time.Duration // last − rtt
	started  bool
}

const seedFixMaxWindow = 1024

// SeedFixConfig parameterises SeedFix; zero fields take the seed's values.
type SeedFixConfig struct {
	Interval   time.Duration // the beat/probe interval (required)
	Multiplier float64       // 3
	Slack      time.Duration // 50ms
	Window     int           // 100 samples
	Every      time.Duration // 5m
	Initial    time.Duration // 3s, used until the first recomputation
}

// NewSeedFix validates cfg and returns a SeedFix detector.
func NewSeedFix(cfg SeedFixConfig) (*SeedFix, error) {
	if cfg.Interval <= 0 {
		return nil, errors.New("detector: seedfix needs the beat interval (e.g. 1s)")
	}
	if cfg.Multiplier == 0 {
		cfg.Multiplier = 3
	}
	if cfg.Slack == 0 {
		cfg.Slack = 50 * time.Millisecond
	}
	if cfg.Window == 0 {
		cfg.Window = 100
	}
	if cfg.Every == 0 {
		cfg.Every = 5 * time.Minute
	}
	if cfg.Initial == 0 {
		cfg.Initial = 3 * time.Second
	}
	if cfg.Multiplier < 0 || cfg.Slack < 0 || cfg.Window < 1 || cfg.Window > seedFixMaxWindow || cfg.Every < 0 || cfg.Initial < 0 {
		return nil, errors.New("detector: seedfix multiplier, slack, every and initial must be ≥ 0 and window in 1..1024")
	}
	s := &SeedFix{cfg: cfg}
	s.Reset()
	return s, nil
}

func (s *SeedFix) Name() string       { return "seedfix" }
func (s *SeedFix) Threshold() float64 { return 1 }
func (s *SeedFix) Reset() {
	cfg := s.cfg
	*s = SeedFix{cfg: cfg, timeout: cfg.Initial}
}

func (s *SeedFix) Observe(now, rtt time.Duration) {
	if !s.started {
		s.recompAt = now + s.cfg.Every
	}
	s.ring[s.next] = rtt
	s.next = (s.next + 1) % s.cfg.Window
	if s.n < s.cfg.Window {
		s.n++
	}
	if now >= s.recompAt {
		s.recompute()
		s.recompAt = now + s.cfg.Every
	}
	s.last, s.origin, s.started = now, now-rtt, true
}

func (s *SeedFix) Restart(now, rtt time.Duration) { s.Observe(now, rtt) }

func (s *SeedFix) recompute() {
	w := s.scratch[:s.n]
	copy(w, s.ring[:s.n])
	slices.Sort(w)
	// Nearest-rank P99.
	i := (99*s.n + 99) / 100
	p99 := w[i-1]
	s.timeout = time.Duration(s.cfg.Multiplier*float64(p99)) + s.cfg.Slack
}

func (s *SeedFix) Deadline() time.Duration {
	if !s.started {
		return Never
	}
	return deadlineAfter(s.origin, s.cfg.Interval+s.timeout)
}

func (s *SeedFix) Suspect(now time.Duration) bool { return now >= s.Deadline() }

func (s *SeedFix) Suspicion(now time.Duration) float64 {
	if !s.started {
		return 0
	}
	lvl := float64(now-s.origin-s.cfg.Interval) / float64(max(s.timeout, 1))
	return consistent(lvl, 1, s.Suspect(now))
}

func (s *SeedFix) AppendExplain(buf []byte, now time.Duration) []byte {
	buf = appendSilence(buf, s.started, now-s.last)
	if !s.started {
		return buf
	}
	buf = append(buf, "; answer expected ≤ "...)
	buf = appendSecs(buf, s.Deadline()-s.last)
	buf = append(buf, " (interval "...)
	buf = appendSecs(buf, s.cfg.Interval)
	buf = append(buf, " + timeout "...)
	buf = appendSecs(buf, s.timeout)
	buf = append(buf, " = "...)
	buf = appendFloat(buf, s.cfg.Multiplier, 1)
	buf = append(buf, "×P99(rtt)+"...)
	buf = appendSecs(buf, s.cfg.Slack)
	return append(buf, ", recomputed periodically)"...)
}

func (s *SeedFix) Explain(now time.Duration) string { return string(s.AppendExplain(nil, now)) }
