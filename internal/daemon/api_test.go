package daemon

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/api"
	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// feed delivers beats straight into the monitor (the ingest path is
// covered by TestEndToEnd); it makes many transitions quickly.
func feed(r *running, inst string, st status.Status) {
	r.d.mon.ObserveBatch([]ingest.Observation{{Service: "fleet", Instance: inst, Source: ingest.Passive, Transport: wire.UDP,
		Epoch: 1, Seq: uint64(time.Now().UnixNano()), ReceivedAt: time.Now(), Status: st}})
}

// SSE resume: a client that disconnects and reconnects with Last-Event-ID
// gets every event it missed, each exactly once, in order.
func TestSSEResumeLosesNothing(t *testing.T) {
	r := startDaemon(t, Options{Config: testConfig(t, nil), DataDir: t.TempDir()})
	defer r.stop(t)
	ctx1, stop1 := context.WithCancel(context.Background())
	first := watchSSE(t, ctx1, r.base+"/api/v1/watch?after=0", "")
	flip := func(n int) {
		for i := range n {
			st := status.Healthy
			if i%2 == 1 {
				st = status.Degraded
			}
			feed(r, fmt.Sprintf("n%d", i%7), st)
		}
	}
	flip(300)
	waitFor(t, 5*time.Second, "the first stream to catch up", func() bool { return len(first.snapshot()) > 50 })
	stop1()
	<-first.done
	got := first.snapshot()
	lastID := fmt.Sprint(got[len(got)-1].Seq)
	flip(300) // missed while disconnected
	ctx2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	second := watchSSE(t, ctx2, r.base+"/api/v1/watch", lastID)
	want := r.d.mon.LastSeq()
	waitFor(t, 5*time.Second, "the resumed stream to catch up", func() bool {
		s := second.snapshot()
		return len(s) > 0 && s[len(s)-1].Seq == want
	})
	all := append(got, second.snapshot()...)
	for i, e := range all {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d: a gap or a duplicate across the resume", i, e.Seq)
		}
	}
	if len(second.ids) == 0 || second.ids[0] != fmt.Sprint(got[len(got)-1].Seq+1) {
		t.Fatalf("resumed stream starts at id %v", second.ids[:1])
	}
	stop2()
	<-second.done
}

// A client that opens the watch stream and never reads does not slow the
// verdict path: beats keep being judged at full speed.
func TestStalledSSEClientDoesNotSlowIngest(t *testing.T) {
	r := startDaemon(t, Options{Config: testConfig(t, nil), InMemory: true})
	defer r.stop(t)
	conn, err := net.DialTimeout("tcp", r.d.HTTPAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/v1/watch?after=0 HTTP/1.1\r\nHost: x\r\n\r\n")
	// Never read: the socket buffers fill and the server's writes block.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20000 {
			st := status.Healthy
			if (i/50)%2 == 1 {
				st = status.Degraded
			}
			feed(r, fmt.Sprintf("n%d", i%50), st)
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("20,000 transitions did not get through while a watch client stalled")
	}
	if seq := r.d.mon.LastSeq(); seq < 20000 {
		t.Fatalf("only %d events for 20,000 flips", seq)
	}
}

func TestBadRequests(t *testing.T) {
	r := startDaemon(t, Options{Config: testConfig(t, nil), InMemory: true})
	defer r.stop(t)
	cases := []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/api/v1/services/nope", "", 404, `"error":"not found"`},
		{"GET", "/api/v1/services/fleet/instances?state=sleepy", "", 400, `unknown state \"sleepy\"`},
		{"GET", "/api/v1/services/fleet/instances?limit=-1", "", 400, "bad limit"},
		{"GET", "/api/v1/events?since=yesterday", "", 400, "neither RFC 3339"},
		{"GET", "/api/v1/events?order=sideways", "", 400, "asc or desc"},
		{"GET", "/api/v1/watch?after=12abc", "", 400, "Last-Event-ID"},
		{"DELETE", "/api/v1/services/fleet/instances/ghost", "", 404, "not found"},
		{"GET", "/api/v1/nothing-here", "", 404, "no such endpoint"},
		{"POST", "/api/v1/beat", "{not json", 400, ""},
		{"POST", "/api/v1/beat", `{"service":"fleet","instance":"a"}` + strings.Repeat(" ", 100000), 413, ""},
		{"POST", "/api/v1/services", "", 405, "use GET"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, r.base+c.path, bytes.NewBufferString(c.body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || !strings.Contains(b.String(), c.want) {
			t.Errorf("%s %s: %d %s, want %d with %q", c.method, c.path, resp.StatusCode, b.String(), c.code, c.want)
		}
	}
	// Still serving after all that.
	var l api.InstanceList
	if code := getJSON(t, r.base+"/api/v1/services/fleet/instances", &l); code != 200 {
		t.Fatalf("after bad requests: %d", code)
	}
}

func TestAPITokens(t *testing.T) {
	c := testConfig(t, nil)
	c.APITokens = [][]byte{[]byte("reader-token-0123456789")}
	r := startDaemon(t, Options{Config: c, InMemory: true})
	defer r.stop(t)
	if code := getJSON(t, r.base+"/api/v1/services", nil); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	req, _ := http.NewRequest("GET", r.base+"/api/v1/services", nil)
	req.Header.Set("Authorization", "Bearer reader-token-0123456789")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("with token: %d", resp.StatusCode)
	}
	// Health endpoints stay open for orchestrators.
	if code := getJSON(t, r.base+"/livez", nil); code != 200 {
		t.Fatalf("livez behind auth: %d", code)
	}
}

// Shutdown drains: /readyz turns 503 while the listeners still serve,
// then everything stops (goleak in TestMain checks nothing is left).
func TestShutdownDrains(t *testing.T) {
	r := startDaemon(t, Options{Config: testConfig(t, nil), InMemory: true, DrainDelay: 700 * time.Millisecond})
	waitFor(t, 5*time.Second, "readyz 200", func() bool { return getJSON(t, r.base+"/readyz", nil) == 200 })
	r.cancel()
	waitFor(t, 2*time.Second, "readyz 503 during drain", func() bool { return getJSON(t, r.base+"/readyz", nil) == 503 })
	if code := getJSON(t, r.base+"/livez", nil); code != 200 {
		t.Fatalf("livez during drain: %d", code)
	}
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no clean stop")
	}
	if _, err := client.Get(r.base + "/livez"); err == nil {
		t.Fatal("HTTP still served after stop")
	}
}

// An open watch stream does not hold shutdown: the daemon stops promptly.
func TestShutdownWithOpenWatch(t *testing.T) {
	r := startDaemon(t, Options{Config: testConfig(t, nil), InMemory: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sse := watchSSE(t, ctx, r.base+"/api/v1/watch", "")
	began := time.Now()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no stop")
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Fatalf("shutdown took %v with a watch stream open", took)
	}
	<-sse.done
}

// A sender beating over gRPC holds a stream open; shutdown does not wait
// for it beyond a moment.
func TestShutdownWithGRPCBeatStream(t *testing.T) {
	c := testConfig(t, nil)
	c.Spec.Services[0].Passive.Tokens = [][]byte{[]byte("grpc-token-0123456789")}
	r := startDaemon(t, Options{Config: c, InMemory: true})
	s, err := heartbeat.New(heartbeat.Config{Service: "fleet", Instance: "g1", Transport: wire.GRPC, Target: r.d.GRPCAddr(),
		Token: "grpc-token-0123456789", Interval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 5*time.Second, "a gRPC beat", func() bool {
		v, err := r.d.mon.Instance("fleet", "g1")
		return err == nil && v.Beats > 0
	})
	began := time.Now()
	r.cancel()
	<-r.done
	if took := time.Since(began); took > 3*time.Second {
		t.Fatalf("shutdown took %v with a gRPC beat stream open", took)
	}
}
