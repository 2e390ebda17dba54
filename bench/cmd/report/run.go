package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fb4b1dcc/pulse/bench/detection"
	"github.com/fb4b1dcc/pulse/bench/healthep"
	"github.com/fb4b1dcc/pulse/bench/internal/child"
	"github.com/fb4b1dcc/pulse/bench/internal/mdsec"
	"github.com/fb4b1dcc/pulse/bench/internal/result"
	"github.com/fb4b1dcc/pulse/bench/internal/sysinfo"
	"github.com/fb4b1dcc/pulse/bench/probing"
	"github.com/fb4b1dcc/pulse/bench/qos"
	"github.com/fb4b1dcc/pulse/bench/registry"
	"github.com/fb4b1dcc/pulse/bench/udpingest"
)

// comparison is one part of the report. collect measures and returns raw
// figures (saved as JSON, so a report can be re-rendered, or one part
// re-measured, without running everything again); render formats them.
// direct, when set, does both at once (the simulator: deterministic and
// quick, its result is not kept).
type comparison struct {
	name    string
	collect func(ctx context.Context, r *child.Runner, quick bool) (any, error)
	render  func(raw json.RawMessage) (*result.Section, error)
	direct  func(ctx context.Context, r *child.Runner, quick bool) *result.Section
}

func renderAs[T any](f func(T) *result.Section) func(json.RawMessage) (*result.Section, error) {
	return func(b json.RawMessage) (*result.Section, error) {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, err
		}
		return f(v), nil
	}
}

func comparisons() []comparison {
	return []comparison{
		{name: "detection", collect: func(ctx context.Context, r *child.Runner, quick bool) (any, error) {
			plan := detection.FullPlan()
			if quick {
				plan = detection.QuickPlan()
			}
			return detection.Run(ctx, r, plan)
		}, render: renderAs(detection.Section)},
		{name: "registry", collect: func(ctx context.Context, r *child.Runner, quick bool) (any, error) {
			return registry.Collect(ctx, r, quick)
		}, render: renderAs(registry.Render)},
		{name: "ingest", collect: func(ctx context.Context, r *child.Runner, quick bool) (any, error) {
			return udpingest.Run(ctx, r, quick)
		}, render: renderAs(udpingest.Render)},
		{name: "http", collect: func(ctx context.Context, r *child.Runner, quick bool) (any, error) {
			return healthep.Run(ctx, r, quick)
		}, render: renderAs(healthep.Render)},
		{name: "probing", collect: func(ctx context.Context, r *child.Runner, quick bool) (any, error) {
			return probing.Measure(ctx, r, quick)
		}, render: renderAs(probing.Render)},
		{name: "qos", direct: qos.Section},
	}
}

// saved is the file of raw figures.
type saved struct {
	Machine sysinfo.Machine
	Mode    string
	Command string
	Took    time.Duration
	// Partial, for a run that re-measured some comparisons and took the
	// others from an earlier run's figures, says which and from when.
	Partial string `json:",omitempty"`
	Raw     map[string]json.RawMessage
}

func run(args []string) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "smoke run (≤ 3 minutes): every comparison runs small and short; asserts each ran, not its figures")
	only := fs.String("only", "", "comma-separated comparisons to run (default all)")
	docs := fs.String("docs", "", "directory of benchmarks.md (default: <repo>/docs for a full run, a temporary directory for --quick)")
	logDir := fs.String("logs", "", "directory for child process logs and results.json (default: a temporary directory)")
	from := fs.String("from", "", "render from this results.json instead of measuring; with --only, measure those comparisons and take the others from the file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	if *logDir == "" {
		d, err := os.MkdirTemp("", "pulse-bench-logs-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		*logDir = d
	}
	if *docs == "" {
		if *quick {
			d, err := os.MkdirTemp("", "pulse-bench-quick-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			*docs = d
		} else {
			root, err := repoRoot()
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			*docs = filepath.Join(root, "docs")
		}
	}
	if err := os.MkdirAll(*logDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r := &child.Runner{LogDir: *logDir, Out: os.Stderr, Start0: start}
	mach := sysinfo.Describe()
	mode := "full"
	if *quick {
		mode = "quick"
	}
	r.Printf("pulse benchmark report (%s): %d CPUs (%s), %s, load %s; child logs in %s", mode, mach.NProc, mach.CPUModel, mach.GoVersion, mach.LoadAvg, *logDir)

	want := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	var prev saved
	if *from != "" {
		b, err := os.ReadFile(*from)
		if err == nil {
			err = json.Unmarshal(b, &prev)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "reading %s: %v\n", *from, err)
			return 1
		}
		r.Printf("re-rendering from %s (%s run of %s)", *from, prev.Mode, prev.Machine.Time.Format(time.RFC3339))
	}
	out := saved{Machine: mach, Mode: mode, Raw: map[string]json.RawMessage{}}
	var secs []*result.Section
	failed, measured := false, false
	for _, c := range comparisons() {
		measure := len(want) == 0 && *from == "" || want[c.name]
		if len(want) > 0 && !want[c.name] && prev.Raw[c.name] == nil && c.direct == nil {
			continue
		}
		t0 := time.Now()
		var sec *result.Section
		switch {
		case c.direct != nil && (measure || *from != ""):
			r.Printf("== %s", c.name)
			sec = c.direct(ctx, r, *quick)
		case measure:
			measured = true
			r.Printf("== %s", c.name)
			raw, err := c.collect(ctx, r, *quick)
			b, merr := json.Marshal(raw)
			if merr != nil {
				err = errors.Join(err, merr)
			}
			out.Raw[c.name] = b
			if sec, merr = c.render(b); merr != nil {
				sec = result.New(c.name)
				err = errors.Join(err, merr)
			}
			if err != nil && sec.Err == nil {
				sec.Err = err
			}
		case prev.Raw[c.name] != nil:
			out.Raw[c.name] = prev.Raw[c.name]
			var err error
			if sec, err = c.render(prev.Raw[c.name]); err != nil {
				sec = result.New(c.name)
				sec.Err = err
			}
		default:
			continue
		}
		if sec.Err == nil && sec.Body.Len() == 0 {
			sec.Err = errors.New("produced no figures")
		}
		if sec.Err != nil {
			failed = true
			r.Printf("%s FAILED: %v", c.name, sec.Err)
		}
		if measure {
			r.Printf("%s done in %s", c.name, time.Since(t0).Round(time.Second))
		}
		secs = append(secs, sec)
		if ctx.Err() != nil {
			break
		}
	}
	if *from != "" && !measured {
		mach, mode = prev.Machine, prev.Mode
		out.Machine, out.Mode = prev.Machine, prev.Mode
	}
	cmd := "go -C bench run ./cmd/report"
	if *quick {
		cmd += " --quick"
	}
	if *only != "" && *from == "" {
		cmd += " --only " + *only
	}
	took := time.Since(start)
	partial := ""
	switch {
	case *from != "" && !measured:
		cmd, took, partial = prev.Command, prev.Took, prev.Partial
	case *from != "":
		cmd = fmt.Sprintf("go -C bench run ./cmd/report --only %s --from %s", *only, *from)
		partial = fmt.Sprintf("%s re-measured on %s (load average %s at the start); the other comparisons are from the %s run of %s (`%s`, %s)",
			*only, mach.Time.Format("2006-01-02 15:04 UTC"), mach.LoadAvg, prev.Mode, prev.Machine.Time.Format("2006-01-02 15:04 UTC"), prev.Command, prev.Took.Round(time.Second))
	}
	out.Command, out.Took, out.Partial = cmd, took, partial
	savePath := filepath.Join(*logDir, "results.json")
	if b, err := json.MarshalIndent(out, "", " "); err == nil {
		if err := os.WriteFile(savePath, b, 0o644); err != nil {
			r.Printf("could not save the raw figures: %v", err)
		} else {
			r.Printf("raw figures saved to %s (re-render with --from %s)", savePath, savePath)
		}
	}
	if ctx.Err() != nil {
		r.Printf("interrupted: %s left as it was", filepath.Join(*docs, "benchmarks.md"))
		return 1
	}
	if mode == "full" && measured {
		// The figures behind the tables, for re-rendering and for readers.
		if b, err := json.MarshalIndent(out, "", " "); err == nil {
			_ = os.MkdirAll(filepath.Join(*docs, "benchmarks"), 0o755)
			if err := os.WriteFile(filepath.Join(*docs, "benchmarks", "results.json"), b, 0o644); err != nil {
				r.Printf("could not save the raw figures: %v", err)
			}
		}
	}
	body := render(mach, mode, cmd, took, secs)
	if partial != "" {
		body = strings.Replace(body, "\n\nMachine: ", "\n\n"+partial+".\n\nMachine: ", 1)
	}
	if err := write(*docs, body, secs); err != nil {
		fmt.Fprintln(os.Stderr, "writing the report:", err)
		return 1
	}
	r.Printf("wrote %s (%s total)", filepath.Join(*docs, "benchmarks.md"), time.Since(start).Round(time.Second))
	for _, s := range secs {
		for _, g := range s.Goals {
			m := "met   "
			if !g.Met {
				m = "MISSED"
			}
			r.Printf("%s %s: %s — %s", m, s.Title, g.Goal, g.Measured)
		}
	}
	if failed {
		return 1
	}
	return 0
}

// repoRoot finds pulse's module root above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/fb4b1dcc/pulse\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("report: cannot find pulse's go.mod above the working directory; pass --docs")
		}
		dir = parent
	}
}

func render(m sysinfo.Machine, mode, cmd string, took time.Duration, secs []*result.Section) string {
	var b strings.Builder
	b.WriteString("## Comparisons with the alternatives\n\n")
	fmt.Fprintf(&b, "Generated by the report command (%s mode) on %s in %s. Reproduce with, from the repository root:\n\n```sh\n%s\n```\n\n",
		mode, m.Time.Format("2006-01-02 15:04 UTC"), took.Round(time.Second), cmd)
	fmt.Fprintf(&b, "Machine: `nproc` = %d, %s, %s memory, Linux %s, %s; load average at the start %s (the machine is shared: other builds and tests run alongside, so every comparison measures its baseline in the same run and reports ratios next to absolute figures).\n\n",
		m.NProc, m.CPUModel, fmtMem(m.MemTotal), m.Kernel, m.GoVersion, m.LoadAvg)
	if mode == "full" {
		b.WriteString("The figures behind these tables are in [benchmarks/results.json](benchmarks/results.json); `go -C bench run ./cmd/report --from ../docs/benchmarks/results.json` renders this section again from them, and adding `--only NAME` re-measures one comparison (detection, registry, ingest, http, probing) and keeps the others.\n\n")
	}
	if mode == "quick" {
		b.WriteString("**Quick mode**: sizes and durations are cut down to check that every comparison runs; its figures are not the comparison's results.\n\n")
	}
	// Goals summary first.
	b.WriteString("### Goals\n\n| comparison | goal | met | measured |\n|---|---|---|---|\n")
	for _, s := range secs {
		if s.Err != nil {
			fmt.Fprintf(&b, "| %s | (all) | **did not run** | %s |\n", s.Title, oneLine(s.Err.Error()))
		}
		for _, g := range s.Goals {
			met := "yes"
			if !g.Met {
				met = "**no**"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", s.Title, g.Goal, met, oneLine(g.Measured))
		}
	}
	b.WriteString("\n")
	for _, s := range secs {
		fmt.Fprintf(&b, "### %s\n\n", s.Title)
		if s.Command != "" {
			fmt.Fprintf(&b, "```sh\n%s\n```\n\n", s.Command)
		}
		if s.Err != nil {
			fmt.Fprintf(&b, "**This comparison failed to run to the end:** %s\n\n", oneLine(s.Err.Error()))
		}
		b.WriteString(s.Body.String())
	}
	return b.String()
}

func oneLine(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "|", "/") }

func fmtMem(b int64) string { return fmt.Sprintf("%.0f GiB", float64(b)/(1<<30)) }

// write replaces the report's section of benchmarks.md and writes the
// plots; the rest of the file is kept as it is.
func write(docs, body string, secs []*result.Section) error {
	if err := os.MkdirAll(filepath.Join(docs, "benchmarks"), 0o755); err != nil {
		return err
	}
	path := filepath.Join(docs, "benchmarks.md")
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(old) == 0 {
		old = []byte("# Benchmarks\n")
	}
	doc, err := mdsec.Replace(string(old), "report", body)
	if err != nil {
		return err
	}
	for _, s := range secs {
		for name, data := range s.Files {
			if err := os.WriteFile(filepath.Join(docs, "benchmarks", name), data, 0o644); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}
