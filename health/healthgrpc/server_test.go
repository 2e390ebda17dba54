package healthgrpc

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/fb4b1dcc/pulse/health"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// grpcHealthProbe finds the real grpc_health_probe binary. Its absence is a
// failure, not a skip: the test exists to check agreement with that client.
func grpcHealthProbe(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"grpc-health-probe", "grpc_health_probe"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(string(out[:len(out)-1]), "bin", "grpc-health-probe")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("grpc-health-probe not found: install it with `go install github.com/grpc-ecosystem/grpc-health-probe@v0.4.62` (.ci/run does)")
	return ""
}

type fixture struct {
	h        *health.Health
	grpcAddr string
	httpURL  string
	client   healthpb.HealthClient
}

func serve(t *testing.T, opts health.Options) *fixture {
	t.Helper()
	h, err := health.New(opts,
		health.Check{Name: "db", Groups: []string{"orders.v1.Orders"}},
		health.Check{Name: "cache", Groups: []string{"orders.v1.Orders", "search.v1.Search"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	h.Set("db", nil)
	h.Set("cache", nil)
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); h.Run(runCtx) }()

	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	Register(gs, h)
	go gs.Serve(gl)

	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h.Handler(), ReadHeaderTimeout: time.Second}
	go hs.Serve(hl)

	cc, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		gs.Stop()
		hs.Close()
		stopRun()
		<-runDone
	})
	return &fixture{h: h, grpcAddr: gl.Addr().String(), httpURL: "http://" + hl.Addr().String(), client: healthpb.NewHealthClient(cc)}
}

// probeExit runs grpc_health_probe and returns its exit code.
func probeExit(t *testing.T, bin, addr, service string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-addr="+addr, "-service="+service, "-connect-timeout=2s", "-rpc-timeout=2s")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		t.Logf("grpc_health_probe -service=%q: exit %d: %s", service, ee.ExitCode(), out)
		return ee.ExitCode()
	}
	t.Fatalf("grpc_health_probe: %v: %s", err, out)
	return -1
}

func httpCode(t *testing.T, url string) int {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// AP-12 replay: kubelet's HTTP GET /healthz and the real grpc_health_probe
// agree with the server's one health state through healthy → unhealthy →
// healthy and during drain.
func TestGRPCHealthProbeAgreesWithHTTP(t *testing.T) {
	bin := grpcHealthProbe(t)
	f := serve(t, health.Options{DrainDelay: time.Hour})

	type want struct{ overall, orders, search, http int }
	check := func(step string, w want) {
		t.Helper()
		got := want{
			overall: probeExit(t, bin, f.grpcAddr, ""),
			orders:  probeExit(t, bin, f.grpcAddr, "orders.v1.Orders"),
			search:  probeExit(t, bin, f.grpcAddr, "search.v1.Search"),
			http:    httpCode(t, f.httpURL+"/healthz"),
		}
		if got != w {
			t.Fatalf("%s: got %+v, want %+v", step, got, w)
		}
	}
	// grpc_health_probe exits 0 when SERVING and 4 when NOT_SERVING.
	check("healthy", want{0, 0, 0, 200})
	f.h.Set("db", errors.New("connection refused"))
	check("db down", want{4, 4, 0, 503})
	f.h.Set("db", nil)
	check("recovered", want{0, 0, 0, 200})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.h.Shutdown(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for !f.h.Snapshot().Draining && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	check("draining", want{4, 4, 4, 503})
	if code := httpCode(t, f.httpURL+"/livez"); code != 200 {
		t.Fatalf("livez during drain: %d", code)
	}
	cancel()
	<-done
}

func TestCheckListWatch(t *testing.T) {
	f := serve(t, health.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := f.client.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown service: %v", err)
	}
	list, err := f.client.List(ctx, &healthpb.HealthListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Statuses) != 3 || list.Statuses["search.v1.Search"].GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("List: %v", list.Statuses)
	}

	stream, err := f.client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "orders.v1.Orders"})
	if err != nil {
		t.Fatal(err)
	}
	recv := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	if s := recv(); s != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch message: %v", s)
	}
	f.h.Set("cache", errors.New("evicted"))
	if s := recv(); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("after failure: %v", s)
	}
	// A change that does not alter this service's status sends nothing;
	// the next message is the recovery.
	f.h.Set("db", errors.New("also down"))
	f.h.Set("db", nil)
	f.h.Set("cache", nil)
	if s := recv(); s != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("after recovery: %v", s)
	}

	unknown, err := f.client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := unknown.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVICE_UNKNOWN {
		t.Fatalf("Watch of unknown service: %v %v", r, err)
	}
}

// A watcher that never reads must not block the state owner.
func TestStalledWatcherDoesNotBlockOwner(t *testing.T) {
	f := serve(t, health.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := f.client.Watch(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20000 {
			if i%2 == 0 {
				f.h.Set("db", errors.New("x"))
			} else {
				f.h.Set("db", nil)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("state updates blocked behind a stalled Watch stream")
	}
}
