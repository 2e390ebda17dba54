package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fb4b1dcc/pulse/status"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(h http.Handler, target string, accept string) (int, string) {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// start runs h in the background and returns a stop function that shuts it
// down and waits for Run to return.
func start(t *testing.T, h *Health) func() {
	t.Helper()
	errc := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { errc <- h.Run(ctx) }()
	return func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// AP-02 replay: a dependency check that hangs forever. /livez keeps
// answering 200; /readyz turns 503 within interval + timeout of the hang;
// hung runs are abandoned, counted and never stacked, so goroutines stay
// bounded over 1,000 intervals.
func TestHungCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var hang sync.Once
		hanging := make(chan struct{})
		db := func(ctx context.Context) error {
			select {
			case <-hanging:
				<-release // a driver that ignores its context
			default:
			}
			return nil
		}
		const interval, timeout = time.Second, 300 * time.Millisecond
		h, err := New(Options{}, Check{Name: "db", Func: db, Interval: interval, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, h)
		var releaseOnce sync.Once
		defer func() { releaseOnce.Do(func() { close(release) }); stop() }()
		synctest.Wait()
		if code, _ := get(h.ReadyHandler(), "/readyz", ""); code != 200 {
			t.Fatalf("readyz before the hang: %d", code)
		}
		hang.Do(func() { close(hanging) })
		hungAt := time.Now()
		for {
			time.Sleep(10 * time.Millisecond)
			if code, _ := get(h.ReadyHandler(), "/readyz", ""); code == 503 {
				break
			}
			if time.Since(hungAt) > interval+timeout {
				t.Fatalf("readyz still 200 %v after the hang began", time.Since(hungAt))
			}
		}
		if code, body := get(h.LiveHandler(), "/livez", ""); code != 200 || body != "ok" {
			t.Fatalf("livez during a hung dependency: %d %q", code, body)
		}
		before := runtime.NumGoroutine()
		time.Sleep(1000 * interval)
		after := runtime.NumGoroutine()
		if after > before {
			t.Fatalf("goroutines grew from %d to %d over 1000 intervals", before, after)
		}
		c, _ := h.Snapshot().Check("db")
		if c.Timeouts != 1 || c.Skipped < 990 || !c.InFlight || c.Status != status.Unhealthy {
			t.Fatalf("hung check state: %+v (want 1 timeout, ~1000 skipped runs, in flight, unhealthy)", c)
		}
		if _, body := get(h.ReadyHandler(), "/readyz?verbose", ""); !strings.Contains(body, "[-]db unhealthy: check db timed out after 300ms") || !strings.Contains(body, "abandoned run still in flight") {
			t.Fatalf("verbose readyz does not explain the hang:\n%s", body)
		}
		releaseOnce.Do(func() { close(release) })
		synctest.Wait()
		time.Sleep(interval)
		synctest.Wait()
		if code, _ := get(h.ReadyHandler(), "/readyz", ""); code != 200 {
			t.Fatalf("readyz after the dependency recovered: %d", code)
		}
	})
}

func TestReadinessNeedsEveryCheckOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := func(ctx context.Context) error {
			select {
			case <-time.After(2 * time.Second):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		h, err := New(Options{},
			Check{Name: "fast", Func: func(context.Context) error { return nil }, Interval: time.Second},
			Check{Name: "warmup", Func: slow, Interval: 10 * time.Second, Timeout: 5 * time.Second},
		)
		if err != nil {
			t.Fatal(err)
		}
		if code, _ := get(h.ReadyHandler(), "/readyz", ""); code != 503 {
			t.Fatalf("ready before any check ran: %d", code)
		}
		if code, _ := get(h.LiveHandler(), "/livez", ""); code != 200 {
			t.Fatalf("not live before checks ran: %d", code)
		}
		stop := start(t, h)
		time.Sleep(time.Second)
		if code, body := get(h.ReadyHandler(), "/readyz", ""); code != 503 || !strings.Contains(body, "[-]warmup unknown") {
			t.Fatalf("ready while a check has not passed yet: %d %q", code, body)
		}
		time.Sleep(1500 * time.Millisecond)
		if code, _ := get(h.ReadyHandler(), "/readyz", ""); code != 200 {
			t.Fatalf("not ready after every check passed: %d", code)
		}
		stop()
	})
}

func TestDegradedAndLiveness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, degradedReady := range []bool{false, true} {
			h, err := New(Options{DegradedIsReady: degradedReady},
				Check{Name: "cache", Func: func(context.Context) error { return Degradedf("hit rate %d%%", 3) }, Interval: time.Second},
				Check{Name: "deadlock", Func: nil, AffectsLiveness: true},
				Check{Name: "db", Func: nil},
			)
			if err != nil {
				t.Fatal(err)
			}
			h.Set("deadlock", nil)
			h.Set("db", errors.New("connection refused"))
			stop := start(t, h)
			synctest.Wait()
			if code, _ := get(h.LiveHandler(), "/livez", ""); code != 200 {
				t.Fatalf("a failing dependency failed liveness: %d", code)
			}
			h.Set("db", nil)
			code, body := get(h.ReadyHandler(), "/readyz?verbose", "")
			wantCode := 503
			if degradedReady {
				wantCode = 200
			}
			if code != wantCode || !strings.Contains(body, "cache degraded: hit rate 3%") {
				t.Fatalf("DegradedIsReady=%v: %d\n%s", degradedReady, code, body)
			}
			h.Set("deadlock", errors.New("worker stuck"))
			if code, body := get(h.LiveHandler(), "/livez?verbose", ""); code != 503 || !strings.Contains(body, "[-]deadlock unhealthy: worker stuck") {
				t.Fatalf("liveness check failure not reported: %d %q", code, body)
			}
			stop()
		}
	})
}

func TestJSONAndExclude(t *testing.T) {
	h, err := New(Options{}, Check{Name: "db"}, Check{Name: "queue"})
	if err != nil {
		t.Fatal(err)
	}
	h.Set("db", nil)
	h.Set("queue", errors.New("broker unreachable"))
	code, body := get(h.ReadyHandler(), "/readyz", "application/json")
	var got jsonBody
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if code != 503 || got.OK || len(got.Checks) != 2 || got.Checks[1].Name != "queue" || got.Checks[1].Error != "broker unreachable" || got.Checks[1].Status != "unhealthy" {
		t.Fatalf("json readyz: %d %+v", code, got)
	}
	if code, _ := get(h.ReadyHandler(), "/readyz?exclude=queue", ""); code != 200 {
		t.Fatalf("exclude=queue still failing: %d", code)
	}
	if code, _ := get(h.ReadyHandler(), "/readyz", ""); code != 503 {
		t.Fatalf("plain readyz: %d", code)
	}
	req := httptest.NewRequest(http.MethodPost, "/readyz", nil)
	rec := httptest.NewRecorder()
	h.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", rec.Code)
	}
}

func TestShutdownDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var runs sync.WaitGroup
		h, err := New(Options{DrainDelay: 5 * time.Second},
			Check{Name: "db", Func: func(context.Context) error { return nil }, Interval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		runs.Add(1)
		var runErr error
		go func() { defer runs.Done(); runErr = h.Run(context.Background()) }()
		synctest.Wait()
		updates, cancel := h.Subscribe()
		defer cancel()
		if s := <-updates; !s.Ready {
			t.Fatal("not ready before shutdown")
		}
		begun := time.Now()
		done := make(chan error, 1)
		go func() { done <- h.Shutdown(context.Background()) }()
		synctest.Wait()
		if s := <-updates; !s.Draining || s.Ready {
			t.Fatalf("watcher not told of drain: %+v", s)
		}
		if code, body := get(h.ReadyHandler(), "/readyz", ""); code != 503 || !strings.Contains(body, "shutdown draining") {
			t.Fatalf("readyz during drain: %d %q", code, body)
		}
		if code, _ := get(h.LiveHandler(), "/livez", ""); code != 200 {
			t.Fatalf("livez during drain: %d", code)
		}
		c, _ := h.Snapshot().Check("db")
		runsAtDrain := c.Runs
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if took := time.Since(begun); took != 5*time.Second {
			t.Fatalf("shutdown took %v, want the 5s drain delay", took)
		}
		runs.Wait()
		if runErr != nil {
			t.Fatal(runErr)
		}
		c, _ = h.Snapshot().Check("db")
		if c.Runs < runsAtDrain+4 {
			t.Fatalf("checks stopped before the drain delay: %d runs at drain, %d at end", runsAtDrain, c.Runs)
		}
	})
}

func TestPanickingCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, err := New(Options{}, Check{Name: "p", Func: func(context.Context) error { panic("nil map") }, Interval: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var got []status.Result
		h.opts.OnResult = func(_ string, r status.Result) { got = append(got, r) }
		stop := start(t, h)
		synctest.Wait()
		c, _ := h.Snapshot().Check("p")
		if c.Status != status.Unhealthy || c.Panics != 1 || !strings.Contains(c.Err, "check panicked: nil map") {
			t.Fatalf("panic not turned into a result: %+v", c)
		}
		stop()
		if len(got) != 1 || got[0].Class != status.ClassInternal {
			t.Fatalf("OnResult: %+v", got)
		}
	})
}

func TestValidation(t *testing.T) {
	if _, err := New(Options{}, Check{Name: "a"}, Check{Name: "a"}, Check{}); err == nil ||
		!strings.Contains(err.Error(), `duplicate check "a"`) || !strings.Contains(err.Error(), "no name") {
		t.Fatalf("want both errors, got %v", err)
	}
	h, _ := New(Options{}, Check{Name: "auto", Func: func(context.Context) error { return nil }})
	if err := h.Set("auto", nil); err == nil {
		t.Fatal("Set on an automatic check accepted")
	}
	if err := h.Set("missing", nil); err == nil {
		t.Fatal("Set on an unknown check accepted")
	}
}

// AP-04 replay: concurrent writers and readers of the health state under
// -race; every reader sees a consistent snapshot.
func TestConcurrentFlipsAndReads(t *testing.T) {
	h, err := New(Options{}, Check{Name: "a"}, Check{Name: "b"})
	if err != nil {
		t.Fatal(err)
	}
	updates, cancel := h.Subscribe()
	defer cancel()
	var wg sync.WaitGroup
	stopRead := make(chan struct{})
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				var err error
				if (i+w)%2 == 0 {
					err = errors.New("flip")
				}
				h.Set([]string{"a", "b"}[w%2], err)
			}
		}()
	}
	var readers sync.WaitGroup
	for range 8 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			handler := h.ReadyHandler()
			for {
				select {
				case <-stopRead:
					return
				case s := <-updates:
					// A snapshot's verdict must agree with its own checks.
					want := true
					for _, c := range s.Checks {
						want = want && c.Status == status.Healthy
					}
					if s.Ready != want {
						t.Errorf("inconsistent snapshot %d: ready=%v checks=%+v", s.Seq, s.Ready, s.Checks)
					}
				default:
					code, _ := get(handler, "/readyz", "")
					if code != 200 && code != 503 {
						t.Errorf("code %d", code)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stopRead)
	readers.Wait()
	if s := h.Snapshot(); s.Seq < 16000 {
		t.Fatalf("only %d snapshots published for 16000 writes", s.Seq)
	}
}
