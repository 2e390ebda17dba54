package sim

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ReadTrace parses a recorded trace in CSV (documented in
// docs/detectors.md):
//
//	instance,arrival_seconds[,rtt_seconds]
//	instance,crash_seconds,crash
//
// Times are monotonic seconds from any common epoch. Blank lines, lines
// starting with '#' and a header line starting with "instance" are
// skipped. Arrivals need not be sorted. An instance without a crash row is
// taken to be up until its last arrival. name labels errors ("file.csv").
func ReadTrace(r io.Reader, name string) ([]Trace, []string, error) {
	type inst struct {
		arr   []Arrival
		crash time.Duration
	}
	byName := map[string]*inst{}
	var order []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") || (line == 1 && strings.HasPrefix(text, "instance")) {
			continue
		}
		f := strings.Split(text, ",")
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		bad := func(why string) error {
			return fmt.Errorf("%s:%d: %s; want instance,seconds[,rtt_seconds] or instance,seconds,crash", name, line, why)
		}
		if len(f) < 2 || len(f) > 3 || f[0] == "" {
			return nil, nil, bad(fmt.Sprintf("%d fields", len(f)))
		}
		t, err := parseSeconds(f[1])
		if err != nil {
			return nil, nil, bad("time: " + err.Error())
		}
		in := byName[f[0]]
		if in == nil {
			in = &inst{crash: NoCrash}
			byName[f[0]] = in
			order = append(order, f[0])
		}
		switch {
		case len(f) == 3 && f[2] == "crash":
			if in.crash != NoCrash {
				return nil, nil, bad("second crash row for " + f[0])
			}
			in.crash = t
		case len(f) == 3:
			rtt, err := parseSeconds(f[2])
			if err != nil {
				return nil, nil, bad("rtt: " + err.Error())
			}
			in.arr = append(in.arr, Arrival{At: t, RTT: rtt, Wall: t})
		default:
			in.arr = append(in.arr, Arrival{At: t, Wall: t})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(order) == 0 {
		return nil, nil, fmt.Errorf("%s: no arrivals", name)
	}
	traces := make([]Trace, 0, len(order))
	for _, n := range order {
		in := byName[n]
		if len(in.arr) == 0 {
			return nil, nil, fmt.Errorf("%s: instance %q has a crash row but no arrivals", name, n)
		}
		slices.SortStableFunc(in.arr, func(a, b Arrival) int { return cmpDur(a.At, b.At) })
		traces = append(traces, Trace{Arrivals: in.arr, Crash: in.crash})
	}
	return traces, order, nil
}

func parseSeconds(s string) (time.Duration, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(v) || v < 0 || v > 1e9 {
		return 0, fmt.Errorf("%q is not a time in seconds between 0 and 1e9", s)
	}
	return time.Duration(math.Round(v * 1e9)), nil
}

// RunTraces runs every detector (with its sweep if cfg.Sweep) over
// recorded traces, reported as one scenario named label.
func RunTraces(ctx context.Context, cfg Config, label string, traces []Trace) (*Result, error) {
	cfg.Scenarios = nil
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	sc := &Scenario{Name: label, Summary: "recorded trace"}
	cfg.Scenarios = []*Scenario{sc}
	cfg.InstanceHours = len(traces)
	sr, err := runScenarioWith(ctx, &cfg, sc, func() {}, func(inst int) Trace { return traces[inst] })
	if err != nil {
		return nil, err
	}
	return &Result{Config: cfg, Scenarios: []ScenarioResult{sr}}, nil
}
