package probing

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fb4b1dcc/pulse/bench/internal/child"
	"github.com/fb4b1dcc/pulse/bench/internal/result"
	"github.com/fb4b1dcc/pulse/bench/internal/stats"
)

// perFleet is how many listeners one fleet child serves (two descriptors
// each with its pooled connection, under the 20,000 open-file limit).
const perFleet = 4000

// Run is one prober run with the servers' counts over it.
type Run struct {
	Res      ProberResult
	Fleet    FleetStats
	Interval time.Duration
}

// Raw is what Measure found.
type Raw struct {
	Fleets                  int
	Targets                 int
	Warm, SlowWarm          time.Duration
	Secs, NaiveSecs         float64
	Naive, Pulse, PulseSlow Run
}

// Measure runs the fleet and the three prober runs.
func Measure(ctx context.Context, r *child.Runner, quick bool) (Raw, error) {
	var raw Raw
	targets, naiveTargets := 10_000, 1_000
	warm, secs, naiveSecs := 3*time.Second, 20.0, 10.0
	slowInterval, slowWarm := 5*time.Second, 10*time.Second
	if quick {
		targets, naiveTargets = 300, 100
		warm, secs, naiveSecs = 2*time.Second, 3, 3
		slowInterval, slowWarm = 2*time.Second, 3*time.Second
	}
	interval := time.Second
	raw.Warm, raw.SlowWarm, raw.Secs, raw.NaiveSecs = warm, slowWarm, secs, naiveSecs
	pki, err := NewPKI()
	if err != nil {
		return raw, err
	}
	var fleets []*child.Proc
	var urls []string
	defer func() {
		for _, f := range fleets {
			f.Stop(5 * time.Second)
		}
	}()
	for left, k := targets, 0; left > 0; left, k = left-perFleet, k+1 {
		n := min(left, perFleet)
		f, err := r.Run(ctx, FleetRole, fmt.Sprintf("tls fleet %d", k), FleetInput{Count: n, PKI: *pki})
		if err != nil {
			return raw, err
		}
		fleets = append(fleets, f)
		var addrs []string
		if err := f.Next(ctx, &addrs); err != nil {
			return raw, err
		}
		for _, a := range addrs {
			urls = append(urls, "https://"+a+"/healthz")
		}
	}
	fleetStats := func() (FleetStats, error) {
		var tot FleetStats
		for _, f := range fleets {
			if err := f.Send(struct{}{}); err != nil {
				return tot, err
			}
			var st FleetStats
			if err := f.Next(ctx, &st); err != nil {
				return tot, err
			}
			tot.Handshakes += st.Handshakes
			tot.Conns += st.Conns
			tot.Requests += st.Requests
			tot.CPU += st.CPU
		}
		return tot, nil
	}
	r.Printf("probing: %d HTTPS targets up in %d processes", len(urls), len(fleets))

	run := func(in ProberInput) (ProberResult, FleetStats, error) {
		var res ProberResult
		f0, err := fleetStats()
		if err != nil {
			return res, FleetStats{}, err
		}
		p, err := r.Run(ctx, ProberRole, fmt.Sprintf("%s prober", in.Mode), in)
		if err != nil {
			return res, FleetStats{}, err
		}
		err = p.Result(ctx, &res)
		p.Stop(5 * time.Second)
		if err != nil {
			return res, FleetStats{}, err
		}
		f1, err := fleetStats()
		d := FleetStats{Handshakes: f1.Handshakes - f0.Handshakes, Conns: f1.Conns - f0.Conns, Requests: f1.Requests - f0.Requests, CPU: f1.CPU - f0.CPU}
		r.Printf("probing: %s: %d targets, %s probes in %.0fs (%s healthy), %.3f CPU-s per 1,000 probes, p99 %s; server saw %s TLS handshakes, %s connections",
			in.Mode, res.Targets, stats.Count(res.Probes), res.Wall, stats.Count(res.Healthy), res.CPU/float64(max(res.Probes, 1))*1000, stats.Secs(res.P99),
			stats.Count(d.Handshakes), stats.Count(d.Conns))
		return res, d, err
	}
	raw.Fleets, raw.Targets = len(fleets), len(urls)
	naive, nf, err := run(ProberInput{Mode: "naive", URLs: urls[:min(naiveTargets, len(urls))], Interval: interval, Warm: time.Second, Secs: naiveSecs, CAPEM: pki.CAPEM})
	if err != nil {
		return raw, err
	}
	raw.Naive = Run{naive, nf, interval}
	pulse, pf, err := run(ProberInput{Mode: "pulse", URLs: urls, Interval: interval, Warm: warm, Secs: secs, CAPEM: pki.CAPEM})
	if err != nil {
		return raw, err
	}
	raw.Pulse = Run{pulse, pf, interval}
	slow, sf, err := run(ProberInput{Mode: "pulse", URLs: urls, Interval: slowInterval, Warm: slowWarm, Secs: secs, CAPEM: pki.CAPEM})
	if err != nil {
		return raw, err
	}
	raw.PulseSlow = Run{slow, sf, slowInterval}
	return raw, nil
}

// Render formats the comparison.
func Render(raw Raw) *result.Section {
	sec := result.New("Active probing vs a new client per probe")
	if raw.Targets == 0 {
		sec.Err = errors.New("no measurements")
		return sec
	}
	naive, nf, interval := raw.Naive.Res, raw.Naive.Fleet, raw.Naive.Interval
	pulse, pf := raw.Pulse.Res, raw.Pulse.Fleet
	slow, sf, slowInterval := raw.PulseSlow.Res, raw.PulseSlow.Fleet, raw.PulseSlow.Interval
	secs, warm, slowWarm, naiveSecs := raw.Secs, raw.Warm, raw.SlowWarm, raw.NaiveSecs
	fleets := make([]struct{}, raw.Fleets)
	urls := make([]struct{}, raw.Targets)
	per1k := func(p ProberResult) float64 { return p.CPU / float64(max(p.Probes, 1)) * 1000 }
	sec.P("%s HTTPS targets (TLS 1.3, ECDSA P-256 certificate from a CA made for the run) served by %d child processes that count handshakes and connections; each target answers `{\"code\":0}` and is probed with the check \"status 200 and JSON code == 0\", phases spread evenly over the interval. **pulse**: one `probe.Prober` (HTTP module, 2 s timeout) for every target, in a child process: first at 1 s as the issue asks (measured %.0f s after %v of warm-up), then at %v (%.0f s after %v), a rate the machine can sustain with the servers on the same two cores. **naive**: a new `http.Client` and `http.Transport` per probe, closed after it, in a child process, against %s targets at 1 s for %.0f s (a new client per probe cannot keep %s targets at 1 s on two cores). CPU is compared per 1,000 probes. Handshakes and connections are counted at the servers over each whole run, warm-up included.",
		stats.Count(int64(len(urls))), len(fleets), secs, warm, slowInterval, secs, slowWarm, stats.Count(int64(naive.Targets)), naiveSecs, stats.Count(int64(len(urls))))
	expect := func(p ProberResult, iv time.Duration) string {
		want := float64(p.Targets) * p.Wall / iv.Seconds()
		return fmt.Sprintf("%.0f %%", 100*float64(p.Probes)/want)
	}
	row := func(name string, p ProberResult, f FleetStats, iv time.Duration) []string {
		return []string{name, stats.Count(int64(p.Targets)), iv.String(), fmt.Sprintf("%s (%s)", stats.Count(p.Probes), expect(p, iv)), fmt.Sprintf("%.1f %%", 100*float64(p.Healthy)/float64(max(p.Probes, 1))),
			fmt.Sprintf("%.3f CPU-s", per1k(p)), fmt.Sprintf("%.2f", p.CPU/p.Wall), stats.Secs(p.P50), stats.Secs(p.P99), stats.Count(f.Handshakes), stats.Count(f.Conns)}
	}
	sec.Table([]string{"prober", "targets", "interval", "probes (of schedule)", "healthy", "prober CPU per 1,000 probes", "prober cores", "p50", "p99", "TLS handshakes at servers", "connections"}, [][]string{
		row("naive (new client per probe)", naive, nf, interval),
		row("pulse probe.Prober", pulse, pf, interval),
		row("pulse probe.Prober", slow, sf, slowInterval),
	})
	sec.P("Failure reasons (most frequent first): pulse at %v: %s; pulse at %v: %s; naive: %s.", interval, reasons(pulse.Reasons), slowInterval, reasons(slow.Reasons), reasons(naive.Reasons))
	ratio := per1k(naive) / per1k(slow)
	sec.Goal("active probing: ≥ 5× less CPU per probe than a new client per probe", ratio >= 5,
		"%s less at %v (pulse %.3f, naive %.3f CPU-s per 1,000 probes); at 1 s: %s less%s", stats.Ratio(ratio), slowInterval, per1k(slow), per1k(naive), stats.Ratio(per1k(naive)/per1k(pulse)), missBy(ratio, 5))
	for _, x := range []struct {
		p  ProberResult
		f  FleetStats
		iv time.Duration
	}{{slow, sf, slowInterval}, {pulse, pf, interval}} {
		hsPer := float64(x.f.Handshakes) / float64(x.p.Targets)
		sec.Goal(fmt.Sprintf("active probing at %v: TLS handshakes ≈ number of targets", x.iv), hsPer >= 0.9 && hsPer <= 1.2,
			"%s handshakes for %s targets (%.2f per target; %.1f %% of probes healthy)", stats.Count(x.f.Handshakes), stats.Count(int64(x.p.Targets)), hsPer, 100*float64(x.p.Healthy)/float64(max(x.p.Probes, 1)))
	}
	return sec
}

func reasons(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	type kv struct {
		k string
		v int
	}
	var all []kv
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || all[i].v == all[j].v && all[i].k < all[j].k })
	var out []string
	for i, x := range all {
		if i == 4 {
			out = append(out, fmt.Sprintf("and %d more", len(all)-4))
			break
		}
		out = append(out, fmt.Sprintf("%d× %q", x.v, x.k))
	}
	return strings.Join(out, ", ")
}

func missBy(got, want float64) string {
	if got >= want {
		return ""
	}
	return fmt.Sprintf("; short by %.0f %%", (want-got)/want*100)
}
