package incidents

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fb4b1dcc/pulse/health"
	"github.com/fb4b1dcc/pulse/health/healthgrpc"
)

// AP-12 (INC-2023-004): a service exposed only gRPC health; the Kubernetes
// livenessProbe was an HTTP GET /healthz, which got 404, so the kubelet
// killed healthy pods, in the middle of a rolling update.
//
// Pass criterion (INCIDENTS.md): an HTTP GET /healthz (as kubelet does),
// the real grpc_health_probe, and `pulse probe` all agree with the
// server's state; liveness never fails because a dependency is down;
// readiness is false during start-up and during the shutdown drain.
//
// Real time, real sockets: a service built on package health serves the
// same state over HTTP (/livez, /readyz, /healthz) and gRPC
// (grpc.health.v1 via healthgrpc); its readiness depends on a real TCP
// dependency that the replay takes down and brings back.

// apbKubelet is an HTTP probe as the kubelet runs it: GET with a
// kube-probe user agent, a 1 s timeout (timeoutSeconds' default), success
// for 200 ≤ status < 400.
func apbKubelet(url string) (ok bool, code int) {
	c := &http.Client{Timeout: time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return false, 0
	}
	req.Header.Set("User-Agent", "kube-probe/1.31")
	req.Header.Set("Accept", "*/*")
	resp, err := c.Do(req)
	if err != nil {
		return false, 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400, resp.StatusCode
}

// apb12Dep is a real TCP dependency that can be taken down (its listener
// closed: connections refused) and brought back on the same port.
type apb12Dep struct {
	mu   sync.Mutex
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
}

func (d *apb12Dep) up(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	addr := d.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	d.ln, d.addr = ln, ln.Addr().String()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func (d *apb12Dep) down() {
	d.mu.Lock()
	ln := d.ln
	d.ln = nil
	d.mu.Unlock()
	if ln != nil {
		ln.Close()
		d.wg.Wait()
	}
}

// apb12View is what every prober said about the service at one moment.
type apb12View struct {
	kubeReady, kubeLive  bool
	readyCode, liveCode  int
	ghp, ghpGroup        int // grpc-health-probe exit codes: overall, and service shop.Cart
	pulseHTTP, pulseGRPC int // pulse probe exit codes
	watch                healthpb.HealthCheckResponse_ServingStatus
	snapReady, snapLive  bool
}

func (v apb12View) String() string {
	return fmt.Sprintf("kubelet /healthz %v (%d) /livez %v (%d); grpc_health_probe %d, -service=shop.Cart %d; pulse probe http %d, grpc %d; Watch %v; server ready=%v live=%v",
		v.kubeReady, v.readyCode, v.kubeLive, v.liveCode, v.ghp, v.ghpGroup, v.pulseHTTP, v.pulseGRPC, v.watch, v.snapReady, v.snapLive)
}

// agree reports whether every prober matches the server's own state.
func (v apb12View) agree() bool {
	want := 4 // grpc_health_probe and pulse probe: answered NOT_SERVING / not ready
	if v.snapReady {
		want = 0
	}
	watch := healthpb.HealthCheckResponse_NOT_SERVING
	if v.snapReady {
		watch = healthpb.HealthCheckResponse_SERVING
	}
	return v.kubeReady == v.snapReady && v.kubeLive == v.snapLive &&
		v.ghp == want && v.ghpGroup == want && v.pulseHTTP == want && v.pulseGRPC == want && v.watch == watch
}

// apb12Probe asks every prober.
func apb12Probe(t *testing.T, httpAddr, grpcAddr string, watch func() healthpb.HealthCheckResponse_ServingStatus, snap func() (bool, bool)) apb12View {
	t.Helper()
	ghp, pulse := apbGRPCHealthProbe(t), pulseBinary(t)
	var v apb12View
	v.snapReady, v.snapLive = snap()
	v.kubeReady, v.readyCode = apbKubelet("http://" + httpAddr + "/healthz")
	v.kubeLive, v.liveCode = apbKubelet("http://" + httpAddr + "/livez")
	v.ghp = apbExec(t, 10*time.Second, ghp, "-addr="+grpcAddr, "-connect-timeout=1s", "-rpc-timeout=1s").code
	v.ghpGroup = apbExec(t, 10*time.Second, ghp, "-addr="+grpcAddr, "-service=shop.Cart", "-connect-timeout=1s", "-rpc-timeout=1s").code
	v.pulseHTTP = apbExec(t, 10*time.Second, pulse, "probe", "http://"+httpAddr+"/healthz", "--timeout", "1s").code
	v.pulseGRPC = apbExec(t, 10*time.Second, pulse, "probe", "grpc://"+grpcAddr, "--timeout", "1s").code
	if watch != nil {
		v.watch = watch()
	}
	if r2, l2 := snap(); r2 != v.snapReady || l2 != v.snapLive {
		t.Fatalf("the server's state changed while it was being probed")
	}
	return v
}

// apb12Serve runs HTTP and gRPC servers on loopback until the returned
// stop is called.
func apb12Serve(t *testing.T, mux *http.ServeMux, register func(*grpc.Server)) (httpAddr, grpcAddr string, stop func()) {
	t.Helper()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	gs := grpc.NewServer()
	register(gs)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); hs.Serve(hl) }()
	go func() { defer wg.Done(); gs.Serve(gl) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			hs.Shutdown(ctx)
			gs.Stop()
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return hl.Addr().String(), gl.Addr().String(), stop
}

// TestAP12ProbesAgree replays a service's life: start-up (checks not yet
// run), ready, its database down, back, and the shutdown drain. In each
// phase: kubelet's GET /healthz and /livez, grpc_health_probe (overall and
// for the service shop.Cart), `pulse probe http://…/healthz`, `pulse probe
// grpc://…` and a grpc.health.v1 Watch stream. Pass: in every phase all of
// them agree with the server's snapshot, readiness is false at start-up,
// while the database is down and during the drain, and liveness is true
// throughout (a dependency never fails liveness).
func TestAP12ProbesAgree(t *testing.T) {
	dep := &apb12Dep{}
	dep.up(t)
	defer dep.down()
	h, err := health.New(health.Options{DrainDelay: 3 * time.Second},
		health.Check{Name: "db", Interval: 100 * time.Millisecond, Timeout: 200 * time.Millisecond, Groups: []string{"shop.Cart"},
			Func: func(ctx context.Context) error {
				var d net.Dialer
				dep.mu.Lock()
				addr := dep.addr
				dep.mu.Unlock()
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					return fmt.Errorf("database %s: %w", addr, err)
				}
				return c.Close()
			}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	httpAddr, grpcAddr, stop := apb12Serve(t, mux, func(s *grpc.Server) { healthgrpc.Register(s, h) })
	defer stop()

	// A grpc.health.v1 Watch, as a gRPC-aware load balancer keeps one.
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	stream, err := healthpb.NewHealthClient(cc).Watch(wctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var wmu sync.Mutex
	var last healthpb.HealthCheckResponse_ServingStatus
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			wmu.Lock()
			last = m.Status
			wmu.Unlock()
		}
	}()
	defer func() { wcancel(); <-watchDone }()
	watched := func() healthpb.HealthCheckResponse_ServingStatus {
		wmu.Lock()
		defer wmu.Unlock()
		return last
	}
	snap := func() (bool, bool) { s := h.Snapshot(); return s.Ready, s.Live }
	// phase waits until the server's state is want, gives the Watch stream
	// a moment to deliver it, and probes.
	phase := func(name string, wantReady bool) {
		t.Helper()
		want := healthpb.HealthCheckResponse_NOT_SERVING
		if wantReady {
			want = healthpb.HealthCheckResponse_SERVING
		}
		waitFor(t, 5*time.Second, name, func() bool {
			r, l := snap()
			return r == wantReady && l && watched() == want
		})
		v := apb12Probe(t, httpAddr, grpcAddr, watched, snap)
		t.Logf("%-22s %v", name+":", v)
		if !v.agree() || v.snapReady != wantReady || !v.snapLive || !v.kubeLive {
			t.Errorf("%s: the probers disagree with the server (or readiness/liveness is wrong): %v", name, v)
		}
	}

	phase("start-up", false) // serving, checks not run yet
	hctx, hcancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- h.Run(hctx) }()
	defer func() { hcancel(); <-runDone }()
	phase("ready", true)
	dep.down()
	phase("database down", false)
	dep.up(t)
	phase("database back", true)
	shutDone := make(chan error, 1)
	go func() { shutDone <- h.Shutdown(context.Background()) }()
	phase("draining", false)
	if err := <-shutDone; err != nil {
		t.Fatal(err)
	}
}

// TestAP12Naive runs the seed's service: gRPC health only (grpc-go's own
// health server, SERVING) next to an HTTP API that has no /healthz. It
// must fail the criterion: grpc_health_probe and `pulse probe grpc://`
// say serving, while the kubelet's GET /healthz gets 404 (a failed probe:
// the kubelet would restart a healthy pod) and so does `pulse probe
// http://…/healthz`.
func TestAP12Naive(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/orders", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "[]") })
	hs := grpchealth.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	httpAddr, grpcAddr, stop := apb12Serve(t, mux, func(s *grpc.Server) { healthpb.RegisterHealthServer(s, hs) })
	defer stop()
	ghp, pulse := apbGRPCHealthProbe(t), pulseBinary(t)
	kubeOK, code := apbKubelet("http://" + httpAddr + "/healthz")
	g := apbExec(t, 10*time.Second, ghp, "-addr="+grpcAddr, "-connect-timeout=1s", "-rpc-timeout=1s").code
	pg := apbExec(t, 10*time.Second, pulse, "probe", "grpc://"+grpcAddr, "--timeout", "1s").code
	ph := apbExec(t, 10*time.Second, pulse, "probe", "http://"+httpAddr+"/healthz", "--timeout", "1s").code
	t.Logf("seed: grpc_health_probe exit %d, pulse probe grpc %d; kubelet GET /healthz %v (%d), pulse probe http %d",
		g, pg, kubeOK, code, ph)
	if g != 0 || pg != 0 {
		t.Fatalf("the seed's gRPC health does not say SERVING (%d, %d)", g, pg)
	}
	if kubeOK || code != http.StatusNotFound || ph != 4 {
		t.Fatalf("the kubelet's HTTP probe agreed with gRPC (%v, %d, pulse %d): the replay does not bite", kubeOK, code, ph)
	}
}
