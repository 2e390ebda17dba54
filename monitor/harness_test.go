package monitor

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/probe"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// The harness runs a real Monitor inside a synctest bubble. Beats enter
// through ObserveBatch as ingest would deliver them; probes go through a
// scripted network (fakeNet) that answers per target. The subject, the
// verdict engine with its real detectors, is not faked.

func passiveService(name string, n int, zones ...string) ServiceSpec {
	s := ServiceSpec{Name: name, RegisterByBeats: false,
		Passive:    PassiveSpec{Enabled: true, Interval: time.Second, Jitter: 0, Tokens: [][]byte{[]byte("0123456789abcdef")}},
		Detector:   DetectorSpec{Type: "adaptive"},
		Protection: ProtectionSpec{SuspectShare: 0.3, MinGroup: 3, MaxEjection: 0.5, Backoff: 5 * time.Second, BackoffMax: time.Minute, Overwhelm: 10},
		Verdict: VerdictSpec{DownAfter: 2 * time.Second, RecoverAfter: 3, Retries: 1, StartupGrace: 5 * time.Second, RemoveGrace: 10 * time.Second,
			Flap: FlapSpec{Penalty: 1000, Suppress: 2000, Reuse: 750, HalfLife: 30 * time.Second}},
	}
	if len(zones) == 0 {
		zones = []string{""}
	}
	for i := range n {
		z := zones[i%len(zones)]
		s.Instances = append(s.Instances, InstanceSpec{Name: fmt.Sprintf("%s%d", prefix(z), i), Zone: z, Target: fmt.Sprintf("tcp://%s-%d:80", name, i)})
	}
	return s
}

func prefix(z string) string {
	if z == "" {
		return "i"
	}
	return z + "-"
}

// fakeNet answers probes by target: the network as the test scripts it.
type fakeNet struct {
	mu      sync.Mutex
	answers map[string]func() probe.Result
}

func (f *fakeNet) set(target string, fn func() probe.Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[target] = fn
}

type fakeProber struct{ net *fakeNet }

func (p fakeProber) Probe(ctx context.Context, target string) probe.Result {
	p.net.mu.Lock()
	fn := p.net.answers[target]
	p.net.mu.Unlock()
	if fn == nil {
		return ok(5 * time.Millisecond)
	}
	return fn()
}
func (fakeProber) Close() error { return nil }

func ok(lat time.Duration) probe.Result {
	r := probe.Result{Connected: true}
	r.Status, r.Latency = status.Healthy, lat
	return r
}

func refused() probe.Result {
	r := probe.Result{}
	r.Status, r.Class, r.Reason = status.Unhealthy, status.ClassRefused, "dial tcp: connection refused"
	return r
}

func timedOut(after time.Duration) probe.Result {
	time.Sleep(after)
	r := probe.Result{}
	r.Status, r.Class, r.Reason = status.Unhealthy, status.ClassTimeout, "timeout after "+after.String()
	return r
}

func degradedAnswer(msg string) probe.Result {
	r := probe.Result{Connected: true, HTTPStatus: 200}
	r.Status, r.Class, r.Reason = status.Degraded, status.ClassCondition, msg
	return r
}

type harness struct {
	t         *testing.T
	loops     context.Context // beat loops end with it, so a failed test stops them
	stopLoops context.CancelFunc
	m         *Monitor
	net       *fakeNet
	cancel    context.CancelFunc
	done      chan error
	seq       map[string]uint64
	events    []Event
	w         *Watcher
}

func start(t *testing.T, opts Options, services ...ServiceSpec) *harness {
	t.Helper()
	h := &harness{t: t, net: &fakeNet{answers: map[string]func() probe.Result{}}, seq: map[string]uint64{}}
	if opts.NewProber == nil {
		opts.NewProber = func(probe.Module) (probe.Prober, error) { return fakeProber{h.net}, nil }
	}
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(&Spec{Services: services, Hash: "test"}); err != nil {
		t.Fatal(err)
	}
	h.m = m
	h.w = m.Watch(0)
	h.loops, h.stopLoops = context.WithCancel(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- m.Run(ctx) }()
	return h
}

func (h *harness) stop() {
	h.stopLoops()
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
	h.collect()
	h.w.Close()
}

// beat delivers one healthy beat now.
func (h *harness) beat(svc, inst string) { h.beatStatus(svc, inst, status.Healthy, wire.ReasonNone) }

func (h *harness) beatStatus(svc, inst string, st status.Status, why wire.Reason) {
	k := svc + "/" + inst
	h.seq[k]++
	h.m.ObserveBatch([]ingest.Observation{{Service: svc, Instance: inst, Source: ingest.Passive, Transport: wire.UDP,
		Epoch: 1, Seq: h.seq[k], ReceivedAt: time.Now(), Status: st, Reason: why, Interval: time.Second}})
}

// collect reads every event so far.
func (h *harness) collect() []Event {
	for {
		evs, err := h.w.Next(nil, 1<<20)
		h.events = append(h.events, evs...)
		if err == ErrGap {
			continue // events from before a restart live in the store
		}
		if len(evs) == 0 || err != nil {
			return h.events
		}
	}
}

func (h *harness) state(svc, inst string) InstanceView {
	h.t.Helper()
	v, err := h.m.Instance(svc, inst)
	if err != nil {
		h.t.Fatal(err)
	}
	return v
}

// transitions returns the transitions of one instance as "from→to".
func (h *harness) transitions(svc, inst string) []string {
	var out []string
	for _, e := range h.collect() {
		if e.Service == svc && e.Instance == inst {
			out = append(out, e.From+"→"+e.To)
		}
	}
	return out
}

func (h *harness) lastEvent(svc, inst, to string) (Event, bool) {
	evs := h.collect()
	for i := len(evs) - 1; i >= 0; i-- {
		if e := evs[i]; e.Service == svc && e.Instance == inst && e.To == to {
			return e, true
		}
	}
	return Event{}, false
}

func (h *harness) count(to string) int {
	n := 0
	for _, e := range h.collect() {
		if e.Instance != "" && e.To == to {
			n++
		}
	}
	return n
}

// beatEvery delivers beats for the given instances every interval until
// stop returns true, from one goroutine of the bubble.
func (h *harness) beatLoop(svc string, interval time.Duration, until time.Duration, alive func(inst string, at time.Duration) bool, insts []string) {
	start := time.Now()
	for {
		at := time.Since(start)
		if at >= until {
			return
		}
		for _, in := range insts {
			if alive(in, at) {
				h.beat(svc, in)
			}
		}
		select {
		case <-h.loops.Done():
			return
		case <-time.After(interval):
		}
	}
}

func names(s ServiceSpec) []string {
	var out []string
	for _, in := range s.Instances {
		out = append(out, in.Name)
	}
	return out
}

func has(list []string, want ...string) bool {
	j := 0
	for _, x := range list {
		if j < len(want) && x == want[j] {
			j++
		}
	}
	return j == len(want)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
