package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/internal/faultnet"
	"github.com/fb4b1dcc/pulse/monitor"
)

// Options configures a demo run.
type Options struct {
	HTTPAddr, GRPCAddr, UDPAddr string
	DataDir                     string // "" → a temporary directory, removed at the end
	Duration                    time.Duration
	// Cycle is the length of one pass through the fault script (default
	// 150s, or Duration when shorter).
	Cycle  time.Duration
	Out    io.Writer
	Logger *slog.Logger
	Color  bool
	// PerZone sizes the fleet: passive instances per service and zone, and
	// HTTP targets per zone (defaults 34 and 10: about 300 instances).
	PerZonePassive, PerZoneHTTP int
	// Cluster runs that many nodes on an embedded etcd instead of one
	// monitor, and kills one mid-run (0: a single monitor).
	Cluster int
}

// Scorecard is what a run proved.
type Scorecard struct {
	Duration       time.Duration
	Faults         []string
	Crashed        []string
	Detected       map[string]time.Duration // crashed instance → time to down
	FalseDowns     []string
	DegradedSeen   int
	DegradedWanted int
	Protections    int
	// Cluster runs: the node killed and how long its peers took to own
	// its instances (0: not yet).
	Killed   string
	Takeover time.Duration
}

// OK reports whether the run met pulse's claims: no false down, every crash
// detected, and (in a cluster) the killed node's instances taken over.
func (s *Scorecard) OK() bool {
	return len(s.FalseDowns) == 0 && len(s.Detected) == len(s.Crashed) && (s.Killed == "" || s.Takeover > 0)
}

// Run starts the monitor and the fleet, plays the fault script until ctx
// ends or Duration passes, prints a live summary, and returns the
// scorecard.
func Run(ctx context.Context, opts Options) (*Scorecard, error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.PerZonePassive == 0 {
		opts.PerZonePassive = 34
	}
	if opts.PerZoneHTTP == 0 {
		opts.PerZoneHTTP = 10
	}
	if opts.Cycle == 0 {
		opts.Cycle = 150 * time.Second
		if opts.Duration > 0 && opts.Duration < opts.Cycle {
			opts.Cycle = opts.Duration
		}
	}
	tmp, err := os.MkdirTemp("", "pulse-demo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	dataDir := opts.DataDir
	if dataDir == "" {
		dataDir = filepath.Join(tmp, "data")
	}
	f, err := newFleet(opts.PerZonePassive, opts.PerZoneHTTP)
	if err != nil {
		return nil, err
	}
	defer f.close()
	cfgPath := filepath.Join(tmp, "pulse.yaml")
	if err := writeFile(cfgPath, f.config(time.Second)); err != nil {
		return nil, err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("demo: generated config: %w", err)
	}
	var (
		d  *daemon.Daemon
		cl *clusterRun
	)
	upstream := func(int) string { return d.UDPAddr() }
	if opts.Cluster > 0 {
		if cl, err = startCluster(opts, cfg, dataDir, tmp); err != nil {
			return nil, err
		}
		defer cl.close()
		d, upstream = cl.nodes[0].d, cl.upstream
	} else {
		d, err = daemon.New(daemon.Options{Config: cfg, ConfigPath: cfgPath, HTTPAddr: opts.HTTPAddr, GRPCAddr: opts.GRPCAddr,
			UDPAddr: opts.UDPAddr, DataDir: dataDir, Logger: opts.Logger, Out: opts.Out})
		if err != nil {
			return nil, err
		}
		dctx, stopDaemon := context.WithCancel(context.Background())
		dDone := make(chan error, 1)
		go func() { dDone <- d.Run(dctx) }()
		<-d.Ready()
		defer func() {
			stopDaemon()
			<-dDone
		}()
	}
	fmt.Fprintf(opts.Out, "dashboard: http://%s/   API: http://%s/api/v1/services   (pulse status --addr http://%s)\n",
		d.HTTPAddr(), d.HTTPAddr(), d.HTTPAddr())
	if cl != nil {
		cl.describe(opts.Out)
	}
	fmt.Fprintf(opts.Out, "fleet: checkout and search (%d instances each, UDP beats through fault relays), payments (%d HTTP targets probed every 1s), zones a b c\n",
		3*opts.PerZonePassive, 3*opts.PerZoneHTTP)
	if err := f.start(upstream); err != nil {
		return nil, err
	}

	run := &runner{opts: opts, d: d, cl: cl, f: f, cfgPath: cfgPath, started: time.Now(),
		card: &Scorecard{Detected: map[string]time.Duration{}}, crashAt: map[string]time.Time{}}
	return run.play(ctx)
}

func writeFile(path, body string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

type runner struct {
	opts    Options
	d       *daemon.Daemon
	cl      *clusterRun    // nil for a single monitor
	bg      sync.WaitGroup // goroutines the script started
	quit    chan struct{}  // closed when the run ends: they stop
	f       *fleet
	cfgPath string
	started time.Time
	card    *Scorecard
	mu      sync.Mutex
	crashAt map[string]time.Time // instance → crash time

	suspectSecond               time.Duration
	suspectShown, suspectHidden int
}

// step is one scripted fault: at a fraction of the cycle, do something,
// and undo it at another fraction (0: never).
type step struct {
	at, until float64
	name      string
	do, undo  func(r *runner, cycle int)
}

func (r *runner) script() []step {
	relay := func(key string) *faultnet.Relay { return r.f.relays[key] }
	return []step{
		{0.10, 0.35, "AP-01 RTT step: checkout zone a beats delayed 420ms ± 80ms",
			func(r *runner, _ int) {
				relay("checkout/a").SetFaults(faultnet.Faults{Delay: 420 * time.Millisecond, Jitter: 80 * time.Millisecond}, faultnet.Faults{})
			},
			func(r *runner, _ int) { relay("checkout/a").SetFaults(faultnet.Faults{}, faultnet.Faults{}) }},
		{0.20, 0.45, "AP-13 30% random loss plus bursts: search zone b (beats and ACKs)",
			func(r *runner, _ int) {
				lossy := faultnet.Faults{Loss: 0.3, BurstEnter: 0.02, BurstExit: 0.3, BurstLoss: 0.9}
				relay("search/b").SetFaults(lossy, lossy)
			},
			func(r *runner, _ int) { relay("search/b").SetFaults(faultnet.Faults{}, faultnet.Faults{}) }},
		{0.40, 0.60, "AP-08 hung dependency: 5 payments instances of zone a answer 200 {\"code\":503}",
			func(r *runner, _ int) {
				for i := range min(5, r.opts.PerZoneHTTP) {
					r.f.target(fmt.Sprintf("payments-a%02d", i)).mode.Store(modeHungDependency)
				}
				r.card.DegradedWanted += min(5, r.opts.PerZoneHTTP)
			},
			func(r *runner, _ int) {
				for i := range min(5, r.opts.PerZoneHTTP) {
					r.f.target(fmt.Sprintf("payments-a%02d", i)).mode.Store(modeOK)
				}
			}},
		{0.45, 0, "crash: one checkout, one search and one payments instance die for good",
			func(r *runner, cycle int) {
				i := r.opts.PerZonePassive - 1 - cycle
				j := r.opts.PerZoneHTTP - 1 - cycle
				if i < 0 || j < 0 {
					return
				}
				victims := []string{fmt.Sprintf("checkout-b%02d", i), fmt.Sprintf("search-a%02d", i), fmt.Sprintf("payments-c%02d", j)}
				now := time.Now()
				r.mu.Lock()
				for _, v := range victims {
					r.crashAt[v] = now
					r.card.Crashed = append(r.card.Crashed, v)
				}
				r.mu.Unlock()
				r.f.beater(victims[0]).stop()
				r.f.beater(victims[1]).stop()
				r.f.target(victims[2]).kill()
			}, nil},
		{0.62, 0.80, "AP-16 regional partition: checkout zone c loses every packet",
			func(r *runner, _ int) {
				cut := faultnet.Faults{Loss: 1}
				relay("checkout/c").SetFaults(cut, cut)
			},
			func(r *runner, _ int) { relay("checkout/c").SetFaults(faultnet.Faults{}, faultnet.Faults{}) }},
		{0.85, 0, "AP-10 hot reload: checkout's beat interval changes 1s ↔ 2s in pulse.yaml",
			func(r *runner, cycle int) {
				iv := 2 * time.Second
				if cycle%2 == 1 {
					iv = time.Second
				}
				if r.cl != nil {
					if err := r.cl.push(r.f.config(iv)); err != nil {
						r.printf("%s  pushing the configuration to etcd failed: %v\n", r.stamp(), err)
					}
					return
				}
				writeFile(r.cfgPath, r.f.config(iv))
			}, nil},
	}
}

// steps is the script, with the cluster's kill when there is one.
func (r *runner) steps() []step {
	s := r.script()
	if r.cl != nil {
		for i := range s {
			s[i].name = strings.Replace(s[i].name, " in pulse.yaml", " (pushed to etcd)", 1)
		}
		s = append(s, r.clusterStep())
	}
	return s
}

func (r *runner) play(ctx context.Context) (*Scorecard, error) {
	r.quit = make(chan struct{})
	if r.opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.opts.Duration)
		defer cancel()
	}
	w := r.d.Monitor().Watch(r.d.Monitor().LastSeq())
	defer w.Close()
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); r.follow(ctx, w) }()

	type timed struct {
		at   time.Duration
		name string
		fn   func(*runner, int)
		c    int
	}
	summary := time.NewTicker(10 * time.Second)
	defer summary.Stop()
	for cycle := 0; ; cycle++ {
		var todo []timed
		base := time.Duration(cycle) * r.opts.Cycle
		for _, s := range r.steps() {
			todo = append(todo, timed{base + time.Duration(s.at*float64(r.opts.Cycle)), s.name, s.do, cycle})
			if s.undo != nil && s.until > 0 {
				todo = append(todo, timed{base + time.Duration(s.until*float64(r.opts.Cycle)), "", s.undo, cycle})
			}
		}
		sort.SliceStable(todo, func(i, j int) bool { return todo[i].at < todo[j].at })
		for _, t := range todo {
			wait := time.Until(r.started.Add(t.at))
			timer := time.NewTimer(wait)
			for waiting := true; waiting; {
				select {
				case <-ctx.Done():
					timer.Stop()
					return r.finish(watchDone)
				case <-summary.C:
					r.printSummary()
				case <-timer.C:
					waiting = false
				}
			}
			if t.name != "" {
				r.card.Faults = append(r.card.Faults, t.name)
				r.printf("%s  FAULT %s\n", r.stamp(), t.name)
			}
			t.fn(r, t.c)
		}
	}
}

func (r *runner) finish(watchDone chan struct{}) (*Scorecard, error) {
	<-watchDone
	close(r.quit)
	r.bg.Wait()
	r.card.Duration = time.Since(r.started).Round(time.Second)
	r.printSummary()
	c := r.card
	r.printf("\n── scorecard after %s ──\n", c.Duration)
	r.printf("faults injected: %d\n", len(c.Faults))
	for _, f := range c.Faults {
		r.printf("  - %s\n", f)
	}
	var times []string
	for _, v := range c.Crashed {
		if d, ok := c.Detected[v]; ok {
			times = append(times, fmt.Sprintf("%s %.1fs", v, d.Seconds()))
		} else {
			times = append(times, v+" NOT DETECTED")
		}
	}
	r.printf("crashes detected: %d of %d (%s)\n", len(c.Detected), len(c.Crashed), strings.Join(times, ", "))
	r.printf("hung dependency seen as degraded: %d of %d\n", c.DegradedSeen, c.DegradedWanted)
	r.printf("protection episodes: %d\n", c.Protections)
	if r.cl != nil {
		r.printClusterCard()
	}
	r.printf("false downs: %d", len(c.FalseDowns))
	if len(c.FalseDowns) > 0 {
		r.printf(" (%s)", strings.Join(c.FalseDowns, ", "))
	}
	r.printf("\n")
	return c, nil
}

func (r *runner) stamp() string {
	return fmt.Sprintf("+%5.1fs", time.Since(r.started).Seconds())
}

func (r *runner) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.opts.Out, format, args...)
}

// follow prints notable events as they happen and scores them.
func (r *runner) follow(ctx context.Context, w *monitor.Watcher) {
	for {
		evs, _ := w.Next(nil, 1024)
		for _, e := range evs {
			r.score(e)
		}
		select {
		case <-ctx.Done():
			evs, _ := w.Next(nil, 1<<16)
			for _, e := range evs {
				r.score(e)
			}
			return
		case <-w.C():
		}
	}
}

func (r *runner) score(e monitor.Event) {
	who := e.Service + "/" + e.Instance
	switch {
	case e.Source == "protection" && e.To == "protection_on":
		r.card.Protections++
		r.printf("%s  PROTECTION %s: %s\n", r.stamp(), where(e), e.Reason)
		return
	case e.Source == "protection" && e.To == "protection_off":
		r.printf("%s  protection off %s: %s\n", r.stamp(), where(e), e.Reason)
		return
	case e.Instance == "":
		return
	}
	r.mu.Lock()
	crashed, isCrash := r.crashAt[e.Instance]
	r.mu.Unlock()
	switch e.To {
	case "down":
		if isCrash {
			if _, seen := r.card.Detected[e.Instance]; !seen {
				r.card.Detected[e.Instance] = e.Time.Sub(crashed)
			}
			r.printf("%s  DOWN %s after %.1fs: %s\n", r.stamp(), who, e.Time.Sub(crashed).Seconds(), e.Reason)
		} else {
			r.card.FalseDowns = append(r.card.FalseDowns, who)
			r.printf("%s  FALSE DOWN %s: %s\n", r.stamp(), who, e.Reason)
		}
	case "degraded":
		if strings.Contains(e.Reason, "database pool exhausted") {
			r.card.DegradedSeen++
		}
		r.printf("%s  degraded %s: %s\n", r.stamp(), who, e.Reason)
	case "suspect":
		if isCrash {
			return
		}
		// A partition makes dozens of suspects at once: show a few per
		// second and count the rest.
		sec := time.Since(r.started) / time.Second
		if sec != r.suspectSecond {
			if r.suspectHidden > 0 {
				r.printf("%s  … and %d more suspects\n", r.stamp(), r.suspectHidden)
			}
			r.suspectSecond, r.suspectShown, r.suspectHidden = sec, 0, 0
		}
		if r.suspectShown < 3 {
			r.suspectShown++
			r.printf("%s  suspect %s: %s\n", r.stamp(), who, e.Reason)
		} else {
			r.suspectHidden++
		}
	}
}

func where(e monitor.Event) string {
	if e.Zone == "" {
		return e.Service + " (whole service)"
	}
	return e.Service + " zone " + e.Zone
}

// printSummary prints the states per service.
func (r *runner) printSummary() {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  ", r.stamp())
	for i, s := range r.d.Monitor().Services() {
		if i > 0 {
			b.WriteString(" | ")
		}
		fmt.Fprintf(&b, "%s: %d alive", s.Name, s.Counts["alive"])
		for _, st := range []string{"degraded", "suspect", "protected", "down", "unknown"} {
			if n := s.Counts[st]; n > 0 {
				fmt.Fprintf(&b, " %d %s", n, st)
			}
		}
	}
	b.WriteString("\n")
	r.printf("%s", b.String())
}
