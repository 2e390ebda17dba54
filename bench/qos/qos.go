package qos

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/fb4b1dcc/pulse/bench/internal/child"
	"github.com/fb4b1dcc/pulse/bench/internal/result"
	"github.com/fb4b1dcc/pulse/detector"
	"github.com/fb4b1dcc/pulse/detector/sim"
)

// Section runs the simulator and formats its default-setting table.
func Section(ctx context.Context, r *child.Runner, quick bool) (sec *result.Section) {
	sec = result.New("Detector QoS (simulation)")
	defer func() {
		if p := recover(); p != nil {
			sec.Err = fmt.Errorf("the simulator panicked: %v", p)
		}
	}()
	hours := 1000 // the simulator's default
	if quick {
		hours = 10
	}
	cfg := sim.Config{Seed: 1, InstanceHours: hours, Interval: time.Second}
	last := time.Now()
	cfg.Progress = func(done, total int) {
		if time.Since(last) > 10*time.Second || done == total {
			last = time.Now()
			r.Printf("  qos: %d/%d instance-hours simulated", done, total)
		}
	}
	t0 := time.Now()
	res, err := sim.Run(ctx, cfg)
	if err != nil {
		sec.Err = err
		return sec
	}
	sec.Command = fmt.Sprintf("go run ./cmd/pulse sim --hours %d --seed %d", hours, cfg.Seed)
	sec.P("The detector simulator (`detector/sim`, what `pulse sim` runs) drives every detector exactly as the monitor does (Observe at each arrival, Deadline to learn when the instance turns suspect, the judge's pauses fed to the pause ledger) over seeded scenarios of beat arrivals at 1 s with one real crash per instance at a random time; %d instance-hours per scenario, every detector at its documented default: **adaptive** (pulse's, threshold 8), **phi-normal** (Akka's defaults, threshold 8), **phi-exp** (Cassandra's, threshold 8), **fixed** 3 s timeout, **seedfix** (the seed's 3 × P99 + 50 ms). False suspicions are per instance-hour; T_MR is the mean time between false suspicions, T_M their mean duration, P_A the share of up time not suspected, T_D the time from crash to permanent suspicion. Ran in %s. The full sweep and the QoS curves are in [detectors/README.md](detectors/README.md).", hours, time.Since(t0).Round(time.Second))
	var rows [][]string
	for _, sr := range res.Scenarios {
		var base *detector.QoS
		for i := range sr.Curves {
			if sr.Curves[i].Kind.Name == "adaptive" {
				base = &sr.Curves[i].Default
			}
		}
		for _, c := range sr.Curves {
			q := c.Default
			name := c.Kind.Name
			if name == "adaptive" {
				name = "**adaptive**"
			}
			vs := "–"
			if base != nil && c.Kind.Name != "adaptive" {
				vs = fmt.Sprintf("%s / %s", rateRatio(base.FalsePerHour, q.FalsePerHour), ratio(base.TDP99.Seconds(), q.TDP99.Seconds()))
			}
			rows = append(rows, []string{sr.Scenario.Name, name, fmt.Sprintf("%.3g", q.FalsePerHour), dur(q.TMR), dur(q.TM), fmt.Sprintf("%.6f", q.PA),
				dur(q.TDMean), dur(q.TDP99), dur(q.TDMax), vs})
		}
	}
	sec.Table([]string{"scenario", "detector", "false susp. / inst-h", "T_MR", "T_M", "P_A", "T_D mean", "T_D p99", "T_D max", "adaptive vs it: false rate / T_D p99"}, rows)
	return sec
}

func dur(d time.Duration) string {
	switch {
	case d >= detector.Never || d < 0:
		return "never"
	case d == 0:
		return "0"
	case d >= time.Hour:
		return fmt.Sprintf("%.1f h", d.Hours())
	case d >= time.Minute:
		return fmt.Sprintf("%.1f min", d.Minutes())
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(a/b) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// rateRatio compares false rates, saying "0 vs x" where adaptive has none.
func rateRatio(a, b float64) string {
	switch {
	case a == 0 && b == 0:
		return "both 0"
	case a == 0:
		return "0 vs >0"
	}
	return ratio(a, b)
}
