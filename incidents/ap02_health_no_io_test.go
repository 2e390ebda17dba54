package incidents

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fb4b1dcc/pulse/health"
)

// AP-02 (INC-2024-0117, blocking I/O amplification). The health handler
// queried MySQL synchronously on every request; when the database hung,
// every probe request hung with it, goroutines piled up and the service
// went down in an avalanche.
//
// Replay, in two parts:
//
// TestAP02HealthHandlerNoIO (real sockets, real time): a real TCP
// "database" that answers, then hangs forever (reads the query, never
// answers, keeps the socket open). The readiness check queries it exactly as
// the seed's handler does: no deadline, no context. Three keep-alive
// clients load /livez, /readyz and a no-op control endpoint throughout.
// Pass criterion: while the database hangs, the handler's answer time
// (measured around ServeHTTP on the server) has p99 < 1 ms over at least
// 100 requests (on an oversubscribed host, < 4 × the p99 of the no-op
// control measured in the same load, if that is more; client-side
// timeouts are reported, not asserted); /livez stays 200 (a dependency is
// not liveness); /readyz turns 503 during the hang; the goroutine count
// does not grow while it lasts; the check has exactly one abandoned run and
// later runs are skipped, not stacked.
//
// TestAP02ReadinessDeadline (synctest: the subject is the check schedule):
// a dependency that hangs forever, starting at every 10 ms phase of the
// check's cycle. Pass criterion: /readyz turns 503 within interval +
// timeout every time; during the hang, 2,000 requests each to /livez and
// /readyz, spread over 10 check intervals, take exactly 0 of the bubble's
// time (a handler that waited on anything would let the fake clock run),
// and over 1,000 more intervals the goroutine count does not grow.

const (
	ap02Interval = 200 * time.Millisecond
	ap02Timeout  = 100 * time.Millisecond
	ap02Window   = 2 * time.Second        // how long the database hangs under load
	ap02ClientTO = 500 * time.Millisecond // bounds the naive handler's stuck requests
	ap02Clients  = 3
)

type ap02Result struct {
	unreadyAfter       time.Duration   // -1: /readyz never said 503 in the window
	liveFailures       int             // /livez answers other than 200 during the hang
	handler            []time.Duration // server-side answer times of /livez and /readyz
	live, ready        []time.Duration // the same, apart
	control            []time.Duration // the same for a no-op handler: the host's floor
	client             []time.Duration
	requests, timeouts int
	g1, g2             int // goroutines (load paused) early and late in the hang
	timeoutsBetween    int // client timeouts between the g1 and g2 samples
}

// ap02Run serves h on a real listener, loads it, makes db hang and
// measures. The handler times are those of requests made while db hangs.
func ap02Run(t *testing.T, h http.Handler, db *aDB) ap02Result {
	t.Helper()
	var (
		mu       sync.Mutex
		hangAt   time.Time
		handlerD []time.Duration
		controlD []time.Duration
		liveD    []time.Duration
		readyD   []time.Duration
	)
	// The control is the cheapest answer a handler can give, routed by a
	// mux as the health endpoints are: what any answer costs on this host
	// at this moment.
	controlMux := http.NewServeMux()
	controlMux.HandleFunc("/control", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	timed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		control := r.URL.Path == "/control"
		start := time.Now()
		if control {
			controlMux.ServeHTTP(w, r)
		} else {
			h.ServeHTTP(w, r)
		}
		d := time.Since(start)
		mu.Lock()
		if !hangAt.IsZero() && start.After(hangAt) {
			switch r.URL.Path {
			case "/control":
				controlD = append(controlD, d)
			case "/livez":
				liveD = append(liveD, d)
				handlerD = append(handlerD, d)
			default:
				readyD = append(readyD, d)
				handlerD = append(handlerD, d)
			}
		}
		mu.Unlock()
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: timed, ReadHeaderTimeout: time.Second}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()
	tr := &http.Transport{MaxIdleConnsPerHost: ap02Clients + 1}
	client := &http.Client{Transport: tr, Timeout: ap02ClientTO}
	defer func() {
		db.Close() // frees whatever still waits on the database
		srv.Close()
		<-served
		tr.CloseIdleConnections()
	}()

	get := func(path string) (int, time.Duration, error) {
		start := time.Now()
		resp, err := client.Get(base + path)
		d := time.Since(start)
		if err != nil {
			return 0, d, err
		}
		io.Copy(io.Discard, resp.Body) // read to the end, so the connection is reused
		resp.Body.Close()
		return resp.StatusCode, d, nil
	}
	waitFor(t, 3*time.Second, "/readyz 200 before the hang", func() bool {
		code, _, err := get("/readyz")
		return err == nil && code == http.StatusOK
	})

	// Load: each client alternates /livez and /readyz; gate pauses them
	// so goroutines can be counted without requests in flight.
	var (
		gate     sync.RWMutex
		stop     atomic.Bool
		res      ap02Result
		counting atomic.Bool
		between  atomic.Int64
		wg       sync.WaitGroup
	)
	for c := range ap02Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths := []string{"/livez", "/readyz", "/control"}
			for i := c; !stop.Load(); i++ {
				gate.RLock()
				path := paths[i%3]
				counted := counting.Load()
				code, d, err := get(path)
				gate.RUnlock()
				mu.Lock()
				if !hangAt.IsZero() && path != "/control" {
					res.requests++
					res.client = append(res.client, d)
					if err != nil {
						res.timeouts++
						if counted {
							between.Add(1)
						}
					} else if path == "/livez" && code != http.StatusOK {
						res.liveFailures++
					}
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // the load settles on its connections

	// pause samples the goroutine count with no request in flight; every
	// request started while counting is on has ended before the next
	// sample, because the sample waits for in-flight requests.
	pause := func(count bool) int {
		gate.Lock() // waits for in-flight requests (each bounded by the client timeout)
		defer gate.Unlock()
		runtime.GC()
		n := runtime.NumGoroutine()
		counting.Store(count)
		return n
	}

	mu.Lock()
	hangAt = time.Now()
	mu.Unlock()
	db.hang.Store(true)
	res.unreadyAfter = -1
	poller := &http.Client{Transport: &http.Transport{}, Timeout: ap02ClientTO}
	defer poller.CloseIdleConnections()
	for time.Since(hangAt) < ap02Window/2 {
		resp, err := poller.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				res.unreadyAfter = time.Since(hangAt)
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Until(hangAt.Add(ap02Window / 2)))
	res.g1 = pause(true)
	time.Sleep(time.Until(hangAt.Add(ap02Window)))
	res.g2 = pause(false)
	res.timeoutsBetween = int(between.Load())
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	res.handler, res.control, res.live, res.ready = handlerD, controlD, liveD, readyD
	mu.Unlock()
	return res
}

func TestAP02HealthHandlerNoIO(t *testing.T) {
	db := newADB(t)
	h, err := health.New(health.Options{StopTimeout: 2 * time.Second},
		health.Check{Name: "db", Interval: ap02Interval, Timeout: ap02Timeout,
			// The seed's query, unchanged: it ignores ctx and has no deadline.
			Func: func(context.Context) error { return aQueryNoDeadline(db.Addr()) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- h.Run(ctx) }()
	defer func() {
		db.Close() // the abandoned run returns only when its socket closes
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("health Run: %v", err)
		}
	}()

	r := ap02Run(t, h.Handler(), db)

	st, _ := h.Snapshot().Check("db")
	hp99, cp99, floor := quantile(r.handler, 0.99), quantile(r.client, 0.99), quantile(r.control, 0.99)
	t.Logf("during the hang: %d requests, handler p99 %v (/livez %v, /readyz %v; max %v; a no-op handler's p99 on this host meanwhile %v), client p99 %v, %d client timeouts; /readyz 503 after %v (interval+timeout %v); goroutines %d → %d; db check: %d runs, %d timeouts, %d skipped, in flight %v",
		r.requests, hp99, quantile(r.live, 0.99), quantile(r.ready, 0.99), slices.Max(r.handler), floor, cp99, r.timeouts, r.unreadyAfter, ap02Interval+ap02Timeout, r.g1, r.g2, st.Runs, st.Timeouts, st.Skipped, st.InFlight)
	if len(r.handler) < 100 {
		t.Fatalf("only %d requests served during the hang: the load did not run", len(r.handler))
	}
	// The bound is 1 ms; on an oversubscribed host, where even a no-op
	// handler's p99 passes 0.25 ms because goroutines wait for a CPU, it is
	// four times the no-op's. (That the handlers never wait on anything is
	// asserted exactly in TestAP02ReadinessDeadline.)
	if bound := max(time.Millisecond, 4*floor); hp99 >= bound {
		t.Errorf("handler p99 %v during the hang, want < %v (no-op handler p99 %v)", hp99, bound, floor)
	}
	// Client-side timeouts are reported, not asserted: with the handler
	// answering in microseconds, a 500 ms client stall is the shared host's.
	if r.unreadyAfter < 0 {
		t.Errorf("/readyz never turned 503 during %v of hang", ap02Window/2)
	}
	if r.liveFailures != 0 {
		t.Errorf("/livez failed %d times: a hung dependency must not fail liveness", r.liveFailures)
	}
	if r.g2 > r.g1 {
		t.Errorf("goroutines grew from %d to %d while the database hung", r.g1, r.g2)
	}
	if !st.InFlight || st.Timeouts != 1 || st.Skipped < 3 {
		t.Errorf("db check: in flight %v, timeouts %d, skipped %d; want one abandoned run, later runs skipped (not stacked)", st.InFlight, st.Timeouts, st.Skipped)
	}
}

func TestAP02ReadinessDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var hanging atomic.Bool
		release := make(chan struct{})
		h, err := health.New(health.Options{StopTimeout: time.Second},
			health.Check{Name: "db", Interval: ap02Interval, Timeout: ap02Timeout,
				Func: func(context.Context) error {
					if hanging.Load() {
						<-release // hangs, ignoring ctx, until the test lets it go
					}
					return nil
				}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		go func() { ran <- h.Run(ctx) }()
		handler := h.Handler()
		code := func(path string) int {
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			return rec.Code
		}
		waitCode := func(path string, want int, limit time.Duration) time.Duration {
			start := time.Now()
			for code(path) != want {
				if time.Since(start) > limit {
					t.Fatalf("%s not %d after %v", path, want, limit)
				}
				time.Sleep(time.Millisecond)
			}
			return time.Since(start)
		}
		waitCode("/readyz", http.StatusOK, time.Second)

		bound := ap02Interval + ap02Timeout
		var worst time.Duration
		for phase := time.Duration(0); phase < ap02Interval; phase += 10 * time.Millisecond {
			time.Sleep(phase)
			hanging.Store(true)
			d := waitCode("/readyz", http.StatusServiceUnavailable, 10*bound)
			worst = max(worst, d)
			if d > bound {
				t.Errorf("hang at phase %v: /readyz 503 after %v, want ≤ %v", phase, d, bound)
			}
			if code("/livez") != http.StatusOK {
				t.Errorf("hang at phase %v: /livez failed", phase)
			}
			// Let it recover before the next phase.
			hanging.Store(false)
			release <- struct{}{}
			waitCode("/readyz", http.StatusOK, 10*bound)
		}
		t.Logf("/readyz turned 503 at most %v after the hang began (bound interval+timeout = %v)", worst, bound)

		// A long hang: 1,000 intervals, no goroutine growth.
		hanging.Store(true)
		waitCode("/readyz", http.StatusServiceUnavailable, 10*bound)
		g1 := aGoroutines("pulse/health.")
		waited := 0
		for i := range 2000 {
			if i%10 == 0 {
				time.Sleep(ap02Interval / 20) // spread the requests over 10 check intervals
			}
			start := time.Now()
			code("/livez")
			code("/readyz")
			if time.Since(start) != 0 {
				waited++
			}
		}
		time.Sleep(1000 * ap02Interval)
		g2 := aGoroutines("pulse/health.")
		if waited != 0 {
			t.Errorf("%d of 2,000 request pairs waited during the hang, want 0", waited)
		}
		st, _ := h.Snapshot().Check("db")
		t.Logf("1,000 intervals of hang: goroutines in health code %d → %d; skipped %d runs", g1, g2, st.Skipped)
		if g1 == 0 {
			t.Fatal("no goroutine found in health code: the count is broken")
		}
		if g2 > g1 {
			t.Errorf("goroutines grew from %d to %d over 1,000 intervals of hang", g1, g2)
		}
		if st.Skipped < 900 {
			t.Errorf("skipped %d runs during the hang, want ≈ 1,000 (one per interval)", st.Skipped)
		}
		hanging.Store(false)
		close(release)
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("health Run: %v", err)
		}
	})
}

// TestAP02Naive serves the seed's handler, which queries the database on
// every request, through the same replay. It must fail the criterion:
// answers far above 1 ms (the clients time out), /readyz never says 503,
// and every timed-out request leaves a goroutine behind.
func TestAP02Naive(t *testing.T) {
	db := newADB(t)
	badHeartbeat := func(w http.ResponseWriter, r *http.Request) {
		// ❌ the seed: every heartbeat queries MySQL's health table
		if err := aQueryNoDeadline(db.Addr()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/livez", badHeartbeat)
	mux.HandleFunc("/readyz", badHeartbeat)

	r := ap02Run(t, mux, db)

	cp99 := quantile(r.client, 0.99)
	t.Logf("during the hang: %d requests, %d handler answers, client p99 %v, %d client timeouts (%d between samples); /readyz 503 after %v; goroutines %d → %d",
		r.requests, len(r.handler), cp99, r.timeouts, r.timeoutsBetween, r.unreadyAfter, r.g1, r.g2)
	if cp99 < ap02ClientTO {
		t.Errorf("client p99 %v: the naive handler answered during the hang; the replay does not bite", cp99)
	}
	if r.unreadyAfter >= 0 {
		t.Errorf("/readyz said 503 after %v: the naive handler is not supposed to notice", r.unreadyAfter)
	}
	if r.timeoutsBetween == 0 || r.g2-r.g1 < r.timeoutsBetween {
		t.Errorf("goroutines %d → %d with %d timed-out requests in between: want at least one stuck goroutine per timed-out request", r.g1, r.g2, r.timeoutsBetween)
	}
	if len(r.handler) != 0 {
		t.Errorf("%d naive handler calls returned during the hang", len(r.handler))
	}
}
