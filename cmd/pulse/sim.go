package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/fb4b1dcc/pulse/detector/sim"
)

func newSimCmd() *cobra.Command {
	var (
		scenarios string
		hours     int
		seed      uint64
		interval  time.Duration
		sweep     bool
		out       string
		tracePath string
		workers   int
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Compare failure detectors on simulated or recorded beat traces",
		Long: `sim runs pulse's Adaptive detector and the baselines (fixed timeout, the
seed's P99 fix, phi accrual normal and exponential) over seeded synthetic
scenarios with real crashes, and prints their QoS: false suspicions per
instance-hour, mistake recurrence and duration, query accuracy and detection
time. With --out it also sweeps every detector's threshold and writes the
table as Markdown plus one SVG QoS curve per scenario. With --trace it runs
the detectors over a recorded trace instead (CSV; see docs/detectors.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := sim.Config{Seed: seed, InstanceHours: hours, Interval: interval, Workers: workers}
			cfg.Sweep = sweep || out != ""
			if isTerminal(os.Stderr) {
				p := newProgress(os.Stderr)
				cfg.Progress = p.update
				defer p.done()
			}
			ctx := cmd.Context()
			var (
				res *sim.Result
				err error
			)
			if tracePath != "" {
				res, err = runTraceFile(ctx, cfg, tracePath)
			} else {
				if cfg.Scenarios, err = pickScenarios(scenarios); err != nil {
					return err
				}
				res, err = sim.Run(ctx, cfg)
			}
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if err := sim.WriteText(w, res); err != nil {
				return err
			}
			var goals []sim.Goal
			if cfg.Sweep && tracePath == "" {
				goals = sim.Goals(res)
				fmt.Fprintln(w)
				if err := sim.WriteGoals(w, goals); err != nil {
					return err
				}
			}
			if out != "" {
				return writeSimOutputs(out, res, goals, reproduceCommand(cmd))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&scenarios, "scenario", "all", "comma-separated scenarios to run ("+strings.Join(scenarioNames(), ", ")+") or all")
	f.IntVar(&hours, "hours", 1000, "instance-hours per scenario (one instance, one hour, one crash each)")
	f.Uint64Var(&seed, "seed", 1, "random seed; a seed always gives the same results")
	f.DurationVar(&interval, "interval", time.Second, "beat interval")
	f.BoolVar(&sweep, "sweep", false, "sweep every detector's threshold and check the goals (implied by --out)")
	f.StringVar(&out, "out", "", "directory to write README.md (the table) and <scenario>.svg (QoS curves) into")
	f.StringVar(&tracePath, "trace", "", "run over a recorded trace (CSV: instance,arrival_seconds[,rtt_seconds] and instance,crash_seconds,crash)")
	f.IntVar(&workers, "workers", 0, "parallel workers (default: GOMAXPROCS)")
	return cmd
}

func scenarioNames() []string {
	var n []string
	for _, s := range sim.Scenarios() {
		n = append(n, s.Name)
	}
	return n
}

func pickScenarios(list string) ([]*sim.Scenario, error) {
	if list == "" || list == "all" {
		return sim.Scenarios(), nil
	}
	var out []*sim.Scenario
	for _, name := range strings.Split(list, ",") {
		s, ok := sim.ScenarioByName(strings.TrimSpace(name))
		if !ok {
			return nil, fmt.Errorf("unknown scenario %q; choose from %s or all", name, strings.Join(scenarioNames(), ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

func runTraceFile(ctx context.Context, cfg sim.Config, path string) (*sim.Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open trace: %w", err)
	}
	defer f.Close()
	traces, _, err := sim.ReadTrace(f, filepath.Base(path))
	if err != nil {
		return nil, err
	}
	return sim.RunTraces(ctx, cfg, "trace:"+filepath.Base(path), traces)
}

func writeSimOutputs(dir string, res *sim.Result, goals []sim.Goal, command string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	write := func(name string, fn func(io.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if err := write("README.md", func(w io.Writer) error { return sim.WriteMarkdown(w, res, goals, command) }); err != nil {
		return err
	}
	for i := range res.Scenarios {
		sr := &res.Scenarios[i]
		name := strings.NewReplacer(":", "-", "/", "-").Replace(sr.Scenario.Name) + ".svg"
		if err := write(name, func(w io.Writer) error { return sim.WriteSVG(w, sr) }); err != nil {
			return err
		}
	}
	return nil
}

// reproduceCommand renders the command line that produced a result, with
// the flags that were set.
func reproduceCommand(cmd *cobra.Command) string {
	parts := []string{"go run ./cmd/pulse sim"}
	for _, name := range []string{"scenario", "hours", "seed", "interval", "sweep", "out", "workers"} {
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed && name != "workers" {
			parts = append(parts, "--"+name+" "+fl.Value.String())
		}
	}
	return strings.Join(parts, " ")
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress draws a one-line progress report on a terminal, at most a few
// times a second.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	last  time.Time
	shown bool
}

func newProgress(w io.Writer) *progress { return &progress{w: w, start: time.Now()} }

func (p *progress) update(done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if now.Sub(p.last) < 200*time.Millisecond && done < total {
		return
	}
	p.last = now
	el := now.Sub(p.start)
	eta := ""
	if done > 0 && el > 2*time.Second {
		eta = fmt.Sprintf(", about %v left", (el * time.Duration(total-done) / time.Duration(done)).Round(time.Second))
	}
	fmt.Fprintf(p.w, "\rsim: %d/%d instance-hours (%d%%)%s   ", done, total, 100*done/max(total, 1), eta)
	p.shown = true
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
