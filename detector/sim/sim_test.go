package sim

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fb4b1dcc/pulse/detector"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	ms = time.Millisecond
	s  = time.Second
)

func kind(name string) *Kind {
	for _, k := range Kinds() {
		if k.Name == name {
			return k
		}
	}
	panic("no kind " + name)
}

func fixedKind(timeout time.Duration) *Kind {
	return &Kind{Name: "fixed", Default: timeout.Seconds(), New: kind("fixed").New}
}

// The evaluation of one detector over one trace, checked by hand.
func TestEvaluateExact(t *testing.T) {
	var tr Trace
	for i := 1; i <= 10; i++ {
		tr.Arrivals = append(tr.Arrivals, Arrival{At: time.Duration(i) * s})
	}
	for i := 15; i <= 20; i++ {
		tr.Arrivals = append(tr.Arrivals, Arrival{At: time.Duration(i) * s})
	}
	tr.Crash = 20500 * ms
	f, _ := detector.NewFixed(3 * s)
	var rec detector.QoSRecorder
	evaluate(f, &tr, nil, false, &rec)
	q := rec.QoS()
	// Silent 10 s → 15 s: suspected from 13 s to 15 s (one 2 s mistake);
	// after the crash the last beat at 20 s gives a deadline of 23 s.
	if q.Mistakes != 1 || q.TM != 2*s || q.TDMean != 2500*ms || q.Crashes != 1 {
		t.Fatalf("got %+v", q)
	}
	if want := 1 - 2/19.5; q.PA != want || q.AliveHours != (19500*ms).Hours() {
		t.Fatalf("P_A %v alive %v", q.PA, q.AliveHours)
	}

	// The judge is paused 11 s → 14 s: the deadline at 13 s falls in the
	// pause, so the suspicion shows at the resume; the ledger is fed.
	tr.Pauses = []Pause{{11 * s, 14 * s}}
	l, _ := detector.NewPauseLedger(0)
	f.Reset()
	rec = detector.QoSRecorder{}
	evaluate(f, &tr, l, false, &rec)
	if q := rec.QoS(); q.Mistakes != 1 || q.TM != s {
		t.Fatalf("with a judge pause: %+v", q)
	}
	if l.Total() != 3*s {
		t.Fatalf("ledger credited %v; the tick due at 11 s fired at 14 s", l.Total())
	}
	// A suspicion in progress when the instance crashes is a mistake made
	// right: detection time 0.
	tr = Trace{Arrivals: []Arrival{{At: s}, {At: 2 * s}}, Crash: 6 * s}
	f.Reset()
	rec = detector.QoSRecorder{}
	evaluate(f, &tr, nil, false, &rec)
	if q := rec.QoS(); q.Mistakes != 1 || q.TM != s || q.TDMax != 0 {
		t.Fatalf("suspected before the crash: %+v", q)
	}
}

func TestDeterministic(t *testing.T) {
	cfg := Config{Seed: 42, InstanceHours: 4, Workers: 1}
	a, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Workers = 3
	b, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(qos(a), qos(b)) {
		t.Fatal("same seed, different worker count: different results")
	}
	cfg.Seed = 43
	c, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(qos(a), qos(c)) {
		t.Fatal("a different seed gave identical results")
	}
	// Instance i's trace depends only on (seed, scenario, i): a short
	// run is a prefix of a long one.
	sc, _ := ScenarioByName("loss30")
	if !reflect.DeepEqual(generate(sc, 42, 3, s), generate(sc, 42, 3, s)) {
		t.Fatal("generate is not a function of its inputs")
	}
}

func qos(r *Result) []detector.QoS {
	var out []detector.QoS
	for _, sr := range r.Scenarios {
		for _, c := range sr.Curves {
			for _, p := range c.Points {
				out = append(out, p.QoS)
			}
		}
	}
	return out
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Config{InstanceHours: 100}); err == nil {
		t.Fatal("cancelled run returned no error")
	}
}

// The scenarios produce what they claim.
func TestScenarioShapes(t *testing.T) {
	get := func(name string, inst int) Trace {
		sc, ok := ScenarioByName(name)
		if !ok {
			t.Fatalf("no scenario %s", name)
		}
		return generate(sc, 1, inst, s)
	}
	maxGap := func(tr Trace) time.Duration {
		var m time.Duration
		for i := 1; i < len(tr.Arrivals); i++ {
			m = max(m, tr.Arrivals[i].At-tr.Arrivals[i-1].At)
		}
		return m
	}
	st := get("steady", 0)
	if g := maxGap(st); g > 1100*ms {
		t.Errorf("steady: max gap %v", g)
	}
	if st.Crash < Hour/10 || st.Crash > Hour || st.Arrivals[len(st.Arrivals)-1].At > st.Crash+100*ms {
		t.Errorf("steady: crash %v, last arrival %v", st.Crash, st.Arrivals[len(st.Arrivals)-1].At)
	}
	// rtt-step: 340–500 ms in the middle third, ~20 ms outside.
	for i := 0; i < 20; i++ {
		tr := get("rtt-step", i)
		for _, a := range tr.Arrivals {
			mid := a.At-a.RTT >= Hour/3 && a.At-a.RTT < 2*Hour/3
			if mid && (a.RTT < 340*ms || a.RTT > 500*ms) || !mid && a.RTT > 100*ms {
				t.Fatalf("rtt-step: rtt %v at %v", a.RTT, a.At)
			}
		}
	}
	// loss30: at least 30 % of the beats missing.
	var got, want float64
	for i := 0; i < 20; i++ {
		tr := get("loss30", i)
		got += float64(len(tr.Arrivals))
		want += tr.Crash.Seconds()
	}
	if got/want > 0.70 || got/want < 0.6 {
		t.Errorf("loss30: %.3f of beats arrived", got/want)
	}
	// sender-gc: gaps above 2 s but none above 3.1 s.
	if g := maxGap(get("sender-gc", 0)); g < 2*s || g > 3100*ms {
		t.Errorf("sender-gc: max gap %v", g)
	}
	// judge-pause: one 5 s pause; the beats that arrived in it are read
	// at its end, 1 ms apart, with the queueing in their delay.
	jp := get("judge-pause", 0)
	if len(jp.Pauses) != 1 || jp.Pauses[0].End-jp.Pauses[0].Start != 5*s {
		t.Fatalf("judge-pause: %v", jp.Pauses)
	}
	queued, longest := 0, time.Duration(0)
	for _, a := range jp.Arrivals {
		if a.At > jp.Pauses[0].End && a.At <= jp.Pauses[0].End+10*ms {
			queued++
			longest = max(longest, a.RTT)
		}
	}
	if queued < 4 || longest < 3*s {
		t.Errorf("judge-pause: %d queued beats, longest delay %v", queued, longest)
	}
	// zone-slow: two minutes of delays of 0.47–1.27 s (if the instance
	// lives that long).
	most := 0
	for i := range 10 {
		slow := 0
		for _, a := range get("zone-slow", i).Arrivals {
			if a.RTT >= 470*ms {
				slow++
			}
		}
		if slow > 121 {
			t.Errorf("zone-slow: %d slow beats", slow)
		}
		most = max(most, slow)
	}
	if most < 110 {
		t.Errorf("zone-slow: at most %d slow beats per instance", most)
	}
	// clock-step: the wall clock jumps by an hour, the monotonic does not.
	cs := get("clock-step", 5)
	jumped := false
	for _, a := range cs.Arrivals {
		if a.Wall-a.At == time.Hour {
			jumped = true
		}
	}
	if !jumped || maxGap(cs) > 1100*ms {
		t.Errorf("clock-step: jumped=%v max gap %v", jumped, maxGap(cs))
	}
}

// clock-step guards the monotonic-time rule: it has to bite a detector
// that is fed the wall clock.
func TestClockStepBitesWallClock(t *testing.T) {
	sc, _ := ScenarioByName("clock-step")
	for _, wall := range []bool{false, true} {
		res, err := Run(context.Background(), Config{Seed: 1, InstanceHours: 20, Scenarios: []*Scenario{sc}, Kinds: []*Kind{kind("adaptive"), kind("fixed")}, WallClock: wall})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range res.Scenarios[0].Curves {
			if m := c.Default.Mistakes; (m > 0) != wall {
				t.Errorf("wall=%v %s: %d mistakes", wall, c.Kind.Name, m)
			}
		}
	}
}

// judge-pause exercises the ledger through the monitor's API: without
// it, Adaptive would condemn instances for the judge's own pause.
func TestJudgePauseNeedsTheLedger(t *testing.T) {
	sc, _ := ScenarioByName("judge-pause")
	unguarded := &Kind{Name: "adaptive-no-ledger", Default: 8, New: func(v float64, iv time.Duration, _ *detector.PauseLedger) (detector.Detector, error) {
		return kind("adaptive").New(v, iv, nil)
	}}
	res, err := Run(context.Background(), Config{Seed: 1, InstanceHours: 20, Scenarios: []*Scenario{sc}, Kinds: []*Kind{kind("adaptive"), unguarded}})
	if err != nil {
		t.Fatal(err)
	}
	g, u := res.Scenarios[0].Curves[0].Default, res.Scenarios[0].Curves[1].Default
	if g.Mistakes != 0 || u.Mistakes == 0 {
		t.Fatalf("with ledger %d mistakes, without %d", g.Mistakes, u.Mistakes)
	}
}

// The goals of the issue, on a reduced run. CI asserts every literal goal
// except the literal QoS-curve ones that docs/detectors.md shows to be
// unmeetable by any detector, and for those the reformulated goal.
func TestGoalsReducedRun(t *testing.T) {
	if testing.Short() {
		t.Skip("the reduced goal run takes a while; run without -short")
	}
	res, err := Run(context.Background(), Config{Seed: 1, InstanceHours: goalHours, Sweep: true})
	if err != nil {
		t.Fatal(err)
	}
	goals := Goals(res)
	var asserted, reported int
	for _, g := range goals {
		literalCurve := !g.Reformulated && (strings.HasPrefix(g.Name, "curve ") || strings.Contains(g.Name, "lowest false rate"))
		if literalCurve {
			reported++
			if !g.Met {
				t.Logf("unmet (reported, not asserted): %s %s: %s", g.Scenario, g.Name, g.Detail)
			}
			continue
		}
		asserted++
		if !g.Met {
			t.Errorf("%s: %s: %s", g.Scenario, g.Name, g.Detail)
		}
	}
	// Every scenario's goals were evaluated.
	// 6 in steady, 7 in each of the six stressed scenarios, 5 in clock-step.
	if len(res.Scenarios) != 8 || asserted != 53 {
		t.Fatalf("%d scenarios, %d goals asserted, %d reported", len(res.Scenarios), asserted, reported)
	}
}

func TestReadTrace(t *testing.T) {
	csv := `instance,arrival_seconds,rtt_seconds
# a comment
a,1.0,0.020
a,2.0,0.020
a,3.0
a,5.5,crash
b,0.5
b,1.5,0.01
`
	trs, names, err := ReadTrace(strings.NewReader(csv), "t.csv")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(names, []string{"a", "b"}) || len(trs[0].Arrivals) != 3 || trs[0].Crash != 5500*ms || trs[1].Crash != NoCrash || trs[0].Arrivals[1].RTT != 20*ms {
		t.Fatalf("parsed %v %+v", names, trs)
	}
	for _, bad := range []string{"a\n", "a,x\n", "a,1,2,3\n", "a,-1\n", "a,1,crash\na,2,crash\na,1\n", "a,1,crash\n", ""} {
		if _, _, err := ReadTrace(strings.NewReader(bad), "bad.csv"); err == nil {
			t.Errorf("accepted %q", bad)
		} else if bad != "" && !strings.Contains(err.Error(), "bad.csv:") {
			t.Errorf("error %q lacks the file position", err)
		}
	}
	// Fixed 3 s on a: last beat 3 s, crash 5.5 s → detected at 6 s.
	res, err := RunTraces(context.Background(), Config{Kinds: []*Kind{fixedKind(3 * s)}}, "trace:t.csv", trs)
	if err != nil {
		t.Fatal(err)
	}
	q := res.Scenarios[0].Curves[0].Default
	if q.Crashes != 1 || q.TDMax != 500*ms || q.Mistakes != 0 {
		t.Fatalf("trace QoS %+v", q)
	}
}

func TestReports(t *testing.T) {
	res, err := Run(context.Background(), Config{Seed: 1, InstanceHours: 2, Sweep: true, Scenarios: Scenarios()[:2]})
	if err != nil {
		t.Fatal(err)
	}
	var txt, md bytes.Buffer
	if err := WriteText(&txt, res); err != nil {
		t.Fatal(err)
	}
	if err := WriteMarkdown(&md, res, Goals(res), "go run ./cmd/pulse sim"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| scenario | detector | false susp./inst-h |", "| steady | **adaptive** |", "![rtt-step](rtt-step.svg)", "## Goals"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if !strings.Contains(txt.String(), "rtt-step     seedfix") {
		t.Errorf("text table:\n%s", txt.String())
	}
	var svg bytes.Buffer
	if err := WriteSVG(&svg, &res.Scenarios[1]); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&svg)
	elems := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			elems++
		}
	}
	if elems != len(Kinds()) {
		t.Fatalf("%d curves drawn, want %d", elems, len(Kinds()))
	}
}
