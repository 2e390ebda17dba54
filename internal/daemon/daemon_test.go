package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fb4b1dcc/pulse/api"
	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/monitor"
	pulsev1 "github.com/fb4b1dcc/pulse/proto/pulse/v1"
	"github.com/fb4b1dcc/pulse/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const fleetKey = "fleet-key-0123456789abcdef"

// testConfig: a passive fleet registered by UDP beats and a web service of
// static HTTP targets probed every 300ms.
func testConfig(t *testing.T, targets []string) *config.Config {
	t.Helper()
	var b strings.Builder
	b.WriteString(`
defaults:
  verdict: {down_after: 500ms, recover_after: 2, startup_grace: 2s}
  protection: {suspect_share: 50%}
modules:
  ready:
    kind: http
    timeout: 250ms
    conditions:
      expect: {status: 200, json: {code: 0}}
      degraded: [{when: "json.code == 503", reason: json.msg}]
services:
  - name: fleet
    register_by_beats: true
    passive:
      interval: 200ms
      jitter: 20ms
      keys: [{id: 1, secret: {value: ` + fleetKey + `}}]
`)
	if len(targets) > 0 {
		b.WriteString("  - name: web\n    active: [{module: ready, interval: 300ms}]\n    instances:\n")
		for i, tg := range targets {
			fmt.Fprintf(&b, "      - {name: web-%02d, zone: z%d, target: %q}\n", i, i%2, tg)
		}
	}
	c, err := config.Parse("test.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type running struct {
	d      *Daemon
	cancel context.CancelFunc
	done   chan error
	base   string
}

func startDaemon(t *testing.T, opts Options) *running {
	t.Helper()
	opts.HTTPAddr, opts.GRPCAddr, opts.UDPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	d, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, cancel: cancel, done: make(chan error, 1), base: "http://" + d.HTTPAddr()}
	go func() { r.done <- d.Run(ctx) }()
	<-d.Ready()
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("daemon Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not stop within 30s")
	}
}

var client = &http.Client{Timeout: 5 * time.Second}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode
}

func states(t *testing.T, base, svc string) map[string]string {
	var l api.InstanceList
	if code := getJSON(t, base+"/api/v1/services/"+svc+"/instances", &l); code != 200 {
		t.Fatalf("instances of %s: %d", svc, code)
	}
	out := map[string]string{}
	for _, in := range l.Instances {
		out[in.Instance] = in.State.String()
	}
	return out
}

// sseReader collects events from the watch stream.
type sseReader struct {
	mu     sync.Mutex
	events []monitor.Event
	ids    []string
	done   chan struct{}
}

func watchSSE(t *testing.T, ctx context.Context, url, lastID string) *sseReader {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("watch: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sseReader{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var id, data string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			case line == "" && data != "":
				var e monitor.Event
				if json.Unmarshal([]byte(data), &e) == nil && e.Seq > 0 {
					s.mu.Lock()
					s.events = append(s.events, e)
					s.ids = append(s.ids, id)
					s.mu.Unlock()
				}
				id, data = "", ""
			}
		}
	}()
	return s
}

func (s *sseReader) snapshot() []monitor.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]monitor.Event(nil), s.events...)
}

// target is an HTTP health endpoint that answers {"code":0} until killed.
func target(t *testing.T) *httptest.Server {
	t.Helper()
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"code":0}`))
	}))
}

// End to end in one process: 100 instances registered by real UDP beats,
// 20 static HTTP targets probed for real; some of each die; REST, SSE and
// gRPC report the same states, and every down event has a reason.
func TestEndToEnd(t *testing.T) {
	var targets []*httptest.Server
	var urls []string
	for range 20 {
		s := target(t)
		targets = append(targets, s)
		urls = append(urls, s.URL+"/healthz")
	}
	defer func() {
		for _, s := range targets {
			s.Close()
		}
	}()
	r := startDaemon(t, Options{Config: testConfig(t, urls), DataDir: t.TempDir()})
	defer r.stop(t)

	sseCtx, stopSSE := context.WithCancel(context.Background())
	defer stopSSE()
	sse := watchSSE(t, sseCtx, r.base+"/api/v1/watch?after=0", "")

	key, err := wire.NewKey(1, []byte(fleetKey))
	if err != nil {
		t.Fatal(err)
	}
	type sender struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	var senders []sender
	for i := range 100 {
		s, err := heartbeat.New(heartbeat.Config{Service: "fleet", Instance: fmt.Sprintf("node-%03d", i), Target: r.d.UDPAddr(),
			Key: key, Interval: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.Run(ctx) }()
		senders = append(senders, sender{cancel, done})
	}
	defer func() {
		for _, s := range senders {
			s.cancel()
			<-s.done
		}
	}()

	waitFor(t, 15*time.Second, "every instance alive with a learned beat interval", func() bool {
		f, w := states(t, r.base, "fleet"), states(t, r.base, "web")
		var l api.InstanceList
		getJSON(t, r.base+"/api/v1/services/fleet/instances", &l)
		for _, in := range l.Instances {
			if in.Beats < 10 {
				return false
			}
		}
		return count(f, "alive") == 100 && count(w, "alive") == 20
	})

	// Kill 5 senders and 3 targets.
	for i := range 5 {
		senders[i*20].cancel()
	}
	for i := range 3 {
		targets[i*5].Close()
	}
	waitFor(t, 10*time.Second, "the dead to be down", func() bool {
		f, w := states(t, r.base, "fleet"), states(t, r.base, "web")
		ok := count(f, "down") == 5 && count(w, "down") == 3
		if !ok {
			var v monitor.InstanceView
			getJSON(t, r.base+"/api/v1/services/fleet/instances/node-000", &v)
			t.Logf("fleet %v web %v; node-000 %+v", tally(f), tally(w), v)
		}
		return ok
	})
	fleet, web := states(t, r.base, "fleet"), states(t, r.base, "web")
	for i := range 5 {
		if st := fleet[fmt.Sprintf("node-%03d", i*20)]; st != "down" {
			t.Errorf("node-%03d: %s", i*20, st)
		}
	}
	if count(fleet, "alive") != 95 || count(web, "alive") != 17 {
		t.Fatalf("survivors not alive: fleet %v web %v", tally(fleet), tally(web))
	}

	// gRPC List agrees with REST.
	cc, err := grpc.NewClient(r.d.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := pulsev1.NewMonitorClient(cc).List(ctx, &pulsev1.ListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	fleet, web = states(t, r.base, "fleet"), states(t, r.base, "web")
	if len(list.Instances) != 120 {
		t.Fatalf("gRPC List: %d instances", len(list.Instances))
	}
	for _, in := range list.Instances {
		want := fleet[in.Instance]
		if in.Service == "web" {
			want = web[in.Instance]
		}
		if in.State != want {
			t.Errorf("%s/%s: gRPC %s, REST %s", in.Service, in.Instance, in.State, want)
		}
	}

	// SSE saw every down, with a reason; gRPC Watch from 0 sees the same.
	waitFor(t, 5*time.Second, "SSE to deliver the downs", func() bool {
		n := 0
		for _, e := range sse.snapshot() {
			if e.To == "down" {
				n++
			}
		}
		return n == 8
	})
	for _, e := range sse.snapshot() {
		if e.Instance != "" && e.Reason == "" {
			t.Errorf("event without a reason: %+v", e)
		}
		if e.To == "down" && e.Service == "web" && !strings.Contains(e.Reason, "probe ready failed") {
			t.Errorf("web down reason: %q", e.Reason)
		}
		if e.To == "down" && e.Service == "fleet" && !strings.Contains(e.Reason, "no beat for") {
			t.Errorf("fleet down reason: %q", e.Reason)
		}
	}
	stream, err := pulsev1.NewMonitorClient(cc).Watch(ctx, &pulsev1.WatchRequest{AfterSeq: 0})
	if err != nil {
		t.Fatal(err)
	}
	seen := sse.snapshot()
	for i := range seen {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Seq != seen[i].Seq || ev.To != seen[i].To || ev.Reason != seen[i].Reason {
			t.Fatalf("gRPC Watch event %d = %v, SSE had %+v", i, ev, seen[i])
		}
	}
	// History from the store has them too.
	var hist api.EventList
	getJSON(t, r.base+"/api/v1/events?service=web&limit=1000", &hist)
	downs := 0
	for _, e := range hist.Events {
		if e.To == "down" {
			downs++
		}
	}
	if downs != 3 {
		t.Fatalf("store history has %d web downs, want 3", downs)
	}
	stopSSE()
	<-sse.done
}

func count(m map[string]string, st string) int {
	n := 0
	for _, v := range m {
		if v == st {
			n++
		}
	}
	return n
}

func tally(m map[string]string) map[string]int {
	out := map[string]int{}
	for _, v := range m {
		out[v]++
	}
	return out
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var _ = net.IPv4len
