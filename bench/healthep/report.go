package healthep

import (
	"context"
	"fmt"
	"time"

	"github.com/fb4b1dcc/pulse/bench/internal/child"
	"github.com/fb4b1dcc/pulse/bench/internal/result"
	"github.com/fb4b1dcc/pulse/bench/internal/stats"
)

// Raw is what Run measured.
type Raw struct {
	Rounds  int
	Secs    float64
	Conns   int
	Checks  int
	Results map[string][]LoadResult
}

// Run measures every endpoint over interleaved rounds.
func Run(ctx context.Context, r *child.Runner, quick bool) (Raw, error) {
	raw := Raw{Rounds: 3, Secs: 3, Conns: 8, Results: map[string][]LoadResult{}}
	if quick {
		raw.Rounds, raw.Secs = 1, 1.5
	}
	srv, err := r.Run(ctx, ServerRole, "http servers", struct{}{})
	if err != nil {
		return raw, err
	}
	defer srv.Stop(5 * time.Second)
	var s Servers
	if err := srv.Next(ctx, &s); err != nil {
		return raw, err
	}
	raw.Checks = s.Checks
	ld, err := r.Run(ctx, LoadRole, "http load", struct{}{})
	if err != nil {
		return raw, err
	}
	defer ld.Stop(5 * time.Second)
	type target struct {
		name string
		cmd  LoadCmd
	}
	targets := []target{
		{"bare ok (GET)", LoadCmd{URL: s.Bare, Conns: raw.Conns, Secs: raw.Secs}},
		{"/livez (GET)", LoadCmd{URL: s.Livez, Conns: raw.Conns, Secs: raw.Secs}},
		{"bare 204 (POST)", LoadCmd{URL: s.Bare204, Post: true, Conns: raw.Conns, Secs: raw.Secs}},
		{"beat endpoint (POST)", LoadCmd{URL: s.Beat, Post: true, Conns: raw.Conns, Secs: raw.Secs}},
	}
	for round := range raw.Rounds {
		for _, t := range targets {
			if err := ld.Send(t.cmd); err != nil {
				return raw, err
			}
			var lr LoadResult
			if err := ld.Next(ctx, &lr); err != nil {
				return raw, err
			}
			r.Printf("  http round %d/%d %-22s %s, p99 %s, errors %d, non-2xx %d", round+1, raw.Rounds, t.name,
				stats.Rate(float64(lr.Requests)/lr.Secs), stats.Secs(lr.P99), lr.Errors, lr.BadStatus)
			raw.Results[t.name] = append(raw.Results[t.name], lr)
		}
	}
	return raw, nil
}

// Render formats the comparison.
func Render(raw Raw) *result.Section {
	sec := result.New("Health endpoint and HTTP beat endpoint vs a bare handler")
	res := raw.Results
	if len(res["bare ok (GET)"]) == 0 || len(res["beat endpoint (POST)"]) == 0 {
		sec.Err = fmt.Errorf("no measurements")
		return sec
	}
	rounds, secs, conns := raw.Rounds, raw.Secs, raw.Conns
	s := Servers{Checks: raw.Checks}
	best := func(name string) LoadResult {
		var b LoadResult
		for _, x := range res[name] {
			if b.Secs == 0 || float64(x.Requests)/x.Secs > float64(b.Requests)/b.Secs {
				b = x
			}
		}
		return b
	}
	rate := func(x LoadResult) float64 { return float64(x.Requests) / x.Secs }
	sec.P("Server endpoints in one child process (each its own listener and `http.Server`), a Go load generator with %d keep-alive HTTP/1.1 connections in another, %d interleaved rounds of %.1f s per endpoint; best round of each. `/livez` is `health.LiveHandler()` with %d registered checks run in the background, one of them hung forever (abandoned at its 50 ms timeout every second). The beat endpoint is `ingest.Receiver.Handler()` with a bearer token and a distinct JSON beat per request; its baseline reads the same body and answers 204.", conns, rounds, secs, s.Checks)
	var rows [][]string
	for _, pair := range [][2]string{{"bare ok (GET)", "/livez (GET)"}, {"bare 204 (POST)", "beat endpoint (POST)"}} {
		b, p := best(pair[0]), best(pair[1])
		rows = append(rows,
			[]string{pair[0], stats.Rate(rate(b)), stats.Secs(b.P50), stats.Secs(b.P99), "1 (baseline)", fmt.Sprint(b.Errors + b.BadStatus)},
			[]string{pair[1], stats.Rate(rate(p)), stats.Secs(p.P50), stats.Secs(p.P99), stats.Ratio(rate(p) / rate(b)), fmt.Sprint(p.Errors + p.BadStatus)})
	}
	sec.Table([]string{"endpoint", "requests/s", "p50", "p99", "throughput vs bare", "errors + non-2xx"}, rows)
	lv := rate(best("/livez (GET)")) / rate(best("bare ok (GET)"))
	sec.Goal("/livez ≥ 0.9 of a bare handler with a hung check", lv >= 0.9 && best("/livez (GET)").BadStatus == 0, "%s%s", stats.Ratio(lv), missBy(lv, 0.9))
	bt := rate(best("beat endpoint (POST)")) / rate(best("bare 204 (POST)"))
	sec.Goal("HTTP beat endpoint ≥ 0.8 of a bare handler", bt >= 0.8 && best("beat endpoint (POST)").BadStatus == 0, "%s%s", stats.Ratio(bt), missBy(bt, 0.8))
	return sec
}

func missBy(got, want float64) string {
	if got >= want {
		return ""
	}
	return fmt.Sprintf("; short of the goal by %.0f %%", (want-got)/want*100)
}
