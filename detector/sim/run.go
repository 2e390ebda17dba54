package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/fb4b1dcc/pulse/detector"
)

// Kind is a detector family with its documented default and the values its
// threshold sweep takes.
type Kind struct {
	Name    string
	Param   string // what the sweep varies
	Default float64
	Sweep   []float64
	New     func(v float64, interval time.Duration, ledger *detector.PauseLedger) (detector.Detector, error)
}

// Baseline reports whether k is one of the baselines (not Adaptive).
func (k *Kind) Baseline() bool { return k.Name != "adaptive" }

// Kinds returns the detectors the simulator compares, Adaptive first.
func Kinds() []*Kind {
	return []*Kind{
		{
			Name: "adaptive", Param: "threshold", Default: 8,
			Sweep: adaptiveSweep(),
			New: func(v float64, iv time.Duration, l *detector.PauseLedger) (detector.Detector, error) {
				cfg := detector.DefaultAdaptiveConfig(iv)
				cfg.Threshold = v
				p, err := detector.NewAdaptiveParams(cfg, l)
				if err != nil {
					return nil, err
				}
				return detector.NewAdaptive(p), nil
			},
		},
		{
			Name: "fixed", Param: "timeout (s)", Default: 3,
			Sweep: []float64{1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.8, 2, 2.25, 2.5, 2.75, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25, 30, 40},
			New: func(v float64, _ time.Duration, _ *detector.PauseLedger) (detector.Detector, error) {
				return detector.NewFixed(time.Duration(v * float64(time.Second)))
			},
		},
		{
			Name: "seedfix", Param: "multiplier", Default: 3,
			Sweep: []float64{1, 2, 3, 5, 8, 12, 20, 30, 50, 75, 100, 150, 200, 300, 500},
			New: func(v float64, iv time.Duration, _ *detector.PauseLedger) (detector.Detector, error) {
				return detector.NewSeedFix(detector.SeedFixConfig{Interval: iv, Multiplier: v})
			},
		},
		{
			Name: "phi-normal", Param: "threshold", Default: 8,
			Sweep: []float64{0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 20, 24, 32},
			New: func(v float64, iv time.Duration, _ *detector.PauseLedger) (detector.Detector, error) {
				return detector.NewPhiNormal(detector.PhiNormalConfig{Threshold: v, FirstEstimate: iv})
			},
		},
		{
			Name: "phi-exp", Param: "threshold", Default: 8,
			Sweep: []float64{0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 10, 12, 16},
			New: func(v float64, _ time.Duration, _ *detector.PauseLedger) (detector.Detector, error) {
				return detector.NewPhiExponential(detector.PhiExponentialConfig{Threshold: v})
			},
		},
	}
}

// Config describes a simulator run.
type Config struct {
	Seed          uint64
	InstanceHours int // instances per scenario, one hour each (default 1000)
	Interval      time.Duration
	Scenarios     []*Scenario // default: all
	Kinds         []*Kind     // default: Kinds()
	Sweep         bool        // run every sweep value, not just defaults
	Workers       int         // default GOMAXPROCS
	// WallClock feeds detectors the judge's wall clock instead of its
	// monotonic clock: a deliberate bug that clock-step must expose.
	WallClock bool
	// Progress, if set, is called (from one goroutine at a time) after
	// each finished instance with the work done and the total.
	Progress func(done, total int)
}

// Point is one detector setting's QoS in one scenario.
type Point struct {
	Value float64
	QoS   detector.QoS
}

// Curve is a detector's sweep in one scenario, by ascending value.
type Curve struct {
	Kind    *Kind
	Points  []Point
	Default detector.QoS
}

// ScenarioResult is everything measured in one scenario.
type ScenarioResult struct {
	Scenario *Scenario
	Curves   []Curve // in Kinds order
}

// Curve returns the named detector's curve.
func (r *ScenarioResult) Curve(name string) *Curve {
	for i := range r.Curves {
		if r.Curves[i].Kind.Name == name {
			return &r.Curves[i]
		}
	}
	return nil
}

// Result is a whole run.
type Result struct {
	Config    Config
	Scenarios []ScenarioResult
}

func (c *Config) fill() error {
	if c.InstanceHours == 0 {
		c.InstanceHours = 1000
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if len(c.Scenarios) == 0 {
		c.Scenarios = Scenarios()
	}
	if len(c.Kinds) == 0 {
		c.Kinds = Kinds()
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.InstanceHours < 1 || c.Interval < time.Millisecond {
		return errors.New("sim: instance-hours must be ≥ 1 and interval ≥ 1ms")
	}
	return nil
}

// values lists the settings run for k: the sweep (which must contain the
// default) or the default alone.
func (c *Config) values(k *Kind) []float64 {
	if c.Sweep {
		return k.Sweep
	}
	return []float64{k.Default}
}

// Run simulates every scenario. It is deterministic for a Config: results do
// not depend on Workers or scheduling. It returns ctx's error if cancelled;
// every goroutine it starts has exited when it returns.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	for _, k := range cfg.Kinds {
		if cfg.Sweep && !contains(k.Sweep, k.Default) {
			return nil, fmt.Errorf("sim: %s sweep lacks its default %v", k.Name, k.Default)
		}
	}
	res := &Result{Config: cfg}
	total := len(cfg.Scenarios) * cfg.InstanceHours
	var done int
	var progMu sync.Mutex
	tick := func() {
		if cfg.Progress == nil {
			return
		}
		progMu.Lock()
		done++
		cfg.Progress(done, total)
		progMu.Unlock()
	}
	for _, sc := range cfg.Scenarios {
		sr, err := runScenarioWith(ctx, &cfg, sc, tick, func(inst int) Trace {
			return generate(sc, cfg.Seed, inst, cfg.Interval)
		})
		if err != nil {
			return nil, err
		}
		res.Scenarios = append(res.Scenarios, sr)
	}
	return res, nil
}

type setting struct {
	kind  int
	value float64
}

func runScenarioWith(ctx context.Context, cfg *Config, sc *Scenario, tick func(), trace func(int) Trace) (ScenarioResult, error) {
	var settings []setting
	for ki, k := range cfg.Kinds {
		for _, v := range cfg.values(k) {
			settings = append(settings, setting{ki, v})
		}
	}
	// Per instance and setting; merged in instance order for determinism.
	recs := make([][]detector.QoSRecorder, cfg.InstanceHours)
	jobs := make(chan int)
	errs := make(chan error, cfg.Workers)
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for inst := range jobs {
				tr := trace(inst)
				r, err := runInstance(cfg, &tr, settings)
				if err != nil {
					errs <- err
					return
				}
				recs[inst] = r
				tick()
			}
		}()
	}
	var err error
feed:
	for i := range cfg.InstanceHours {
		select {
		case jobs <- i:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	if err != nil {
		return ScenarioResult{}, err
	}
	sr := ScenarioResult{Scenario: sc}
	si := 0
	for ki, k := range cfg.Kinds {
		c := Curve{Kind: k}
		for _, v := range cfg.values(k) {
			var total detector.QoSRecorder
			for inst := range recs {
				total.Merge(&recs[inst][si])
			}
			q := total.QoS()
			c.Points = append(c.Points, Point{Value: v, QoS: q})
			if v == k.Default {
				c.Default = q
			}
			si++
		}
		_ = ki
		sr.Curves = append(sr.Curves, c)
	}
	return sr, nil
}

func runInstance(cfg *Config, tr *Trace, settings []setting) ([]detector.QoSRecorder, error) {
	out := make([]detector.QoSRecorder, len(settings))
	for i, s := range settings {
		// Each detector has its own judge (and ledger) per trace.
		ledger, err := detector.NewPauseLedger(0)
		if err != nil {
			return nil, err
		}
		d, err := cfg.Kinds[s.kind].New(s.value, cfg.Interval, ledger)
		if err != nil {
			return nil, fmt.Errorf("sim: %s=%v: %w", cfg.Kinds[s.kind].Name, s.value, err)
		}
		evaluate(d, tr, ledger, cfg.WallClock, &out[i])
	}
	return out, nil
}

func contains(xs []float64, v float64) bool {
	for _, x := range xs {
		if x == v {
			return true
		}
	}
	return false
}

// adaptiveSweep is a dense geometric sweep of Adaptive's threshold (about
// 6 % steps from 0.05 to 128, plus 8 exactly), so that its QoS curve is
// resolved finely enough to compare with any baseline setting.
func adaptiveSweep() []float64 {
	var out []float64
	for v := 0.05; v < 130; v *= 1.06 {
		out = append(out, math.Round(v*1000)/1000)
	}
	out = append(out, 8)
	slices.Sort(out)
	return slices.Compact(out)
}
