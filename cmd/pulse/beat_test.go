package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

func TestJudgeBeatBody(t *testing.T) {
	for _, c := range []struct {
		body   string
		want   status.Status
		reason wire.Reason
	}{
		{`{"code":503,"msg":"service degraded"}`, status.Degraded, wire.ReasonCheckBody}, // AP-08: 200 with a business error
		{`{"code":0,"msg":"ok"}`, status.Healthy, wire.ReasonNone},
		{`{"status":"DOWN"}`, status.Unhealthy, wire.ReasonCheckBody},
		{`{"status":"UP"}`, status.Healthy, wire.ReasonNone},
		{`{"status":"degraded"}`, status.Degraded, wire.ReasonCheckBody},
		{`{"code":"E42"}`, status.Degraded, wire.ReasonCheckBody},
		{`ok`, status.Healthy, wire.ReasonNone},
		{``, status.Healthy, wire.ReasonNone},
	} {
		if s, r := judgeBeatBody([]byte(c.body)); s != c.want || r != c.reason {
			t.Errorf("%s: %v/%v, want %v/%v", c.body, s, r, c.want, c.reason)
		}
	}
}

func TestHTTPBeatCheck(t *testing.T) {
	var mu sync.Mutex
	code, body, delay := 200, `{"status":"UP"}`, time.Duration(0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		c, b, d := code, body, delay
		mu.Unlock()
		if d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(c)
		io.WriteString(w, b)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	check := httpBeatCheck("http://"+ln.Addr().String()+"/readyz", 200*time.Millisecond)
	set := func(c int, b string, d time.Duration) { mu.Lock(); code, body, delay = c, b, d; mu.Unlock() }
	for _, tc := range []struct {
		code   int
		body   string
		delay  time.Duration
		want   status.Status
		reason wire.Reason
	}{
		{200, `{"status":"UP"}`, 0, status.Healthy, wire.ReasonNone},
		{200, `{"code":503,"msg":"service degraded"}`, 0, status.Degraded, wire.ReasonCheckBody},
		{503, `{"status":"UP"}`, 0, status.Unhealthy, wire.ReasonCheckStatus},
		{200, `{"status":"UP"}`, time.Second, status.Unhealthy, wire.ReasonCheckTimeout},
	} {
		set(tc.code, tc.body, tc.delay)
		if s, r := check(context.Background()); s != tc.want || r != tc.reason {
			t.Errorf("%d %s (delay %v): %v/%v, want %v/%v", tc.code, tc.body, tc.delay, s, r, tc.want, tc.reason)
		}
	}
	refused := httpBeatCheck("http://127.0.0.1:1/readyz", 200*time.Millisecond)
	if s, r := refused(context.Background()); s != status.Unhealthy || r != wire.ReasonCheckError {
		t.Errorf("refused: %v/%v", s, r)
	}
}

// TestBeatCommand runs `pulse beat` against a real receiver: beats arrive
// with the status of the local check, and the command exits cleanly on
// cancel.
func TestBeatCommand(t *testing.T) {
	dir := t.TempDir()
	const keyLine = "4:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	keyFile := filepath.Join(dir, "api.key")
	if err := os.WriteFile(keyFile, []byte("# test key\n"+keyLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, _ := wire.ParseKeyFile([]byte(keyLine))
	ring, _ := wire.NewKeyring(map[string][]*wire.Key{"api": keys})

	checkLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	checkSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"code":503,"msg":"service degraded"}`)
	})}
	go checkSrv.Serve(checkLn)
	defer checkSrv.Close()

	got := make(chan ingest.Observation, 16)
	r, err := ingest.New(ingest.Config{UDPAddr: "127.0.0.1:0", Keys: ring, Sink: ingest.SinkFunc(func(obs []ingest.Observation) {
		for _, o := range obs {
			select {
			case got <- o:
			default:
			}
		}
	})})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	rdone := make(chan error, 1)
	go func() { rdone <- r.Run(rctx) }()
	defer func() { rcancel(); <-rdone }()
	<-r.Ready()

	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	cmdDone := make(chan int, 1)
	go func() {
		cmd := newRootCmd()
		cmd.SetArgs([]string{"beat", "--service", "api", "--instance", "api-1", "--monitor", r.UDPAddr().String(),
			"--key-file", keyFile, "--interval", "50ms", "--check", "http://" + checkLn.Addr().String() + "/readyz"})
		cmd.SetErr(&stderr)
		if err := cmd.ExecuteContext(ctx); err != nil {
			t.Errorf("pulse beat: %v", err)
			cmdDone <- 1
			return
		}
		cmdDone <- 0
	}()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for i := range 3 {
		select {
		case o := <-got:
			if o.Service != "api" || o.Instance != "api-1" || o.Status != status.Degraded || o.Reason != wire.ReasonCheckBody {
				t.Fatalf("beat %d: %+v", i, o)
			}
		case <-deadline.C:
			t.Fatalf("no beat %d within 5s; stderr: %s", i, stderr.String())
		}
	}
	cancel()
	if code := <-cmdDone; code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stderr.String(), `"msg":"sending beats"`) {
		t.Fatalf("stderr: %s", stderr.String())
	}
}

func TestBeatCommandRejectsBadInput(t *testing.T) {
	t.Setenv("PULSE_TOKEN", "")
	for _, args := range [][]string{
		{"beat", "--service", "api"},                                                        // UDP without a key
		{"beat", "--service", "api", "--transport", "http"},                                 // no token
		{"beat", "--service", "api", "--transport", "carrier-pigeon"},                       // unknown transport
		{"beat", "--service", "a b", "--transport", "grpc", "--token-file", "/nonexistent"}, // unreadable token file
	} {
		cmd := newRootCmd()
		cmd.SetArgs(args)
		cmd.SetErr(io.Discard)
		if err := cmd.ExecuteContext(context.Background()); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}
