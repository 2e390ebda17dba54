package incidents

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/internal/backoff"
	"github.com/fb4b1dcc/pulse/lazy"
)

// AP-09 (INC-2022-418, INC-2023-093, init race + unrecoverable panic). The
// heartbeat client was built in a global sync.Once; when the first build
// panicked (configuration not loaded yet), the Once was spent, the client
// stayed nil for the life of the process and every later caller crashed on
// it. The seed's fix, sync.OnceValue, caches the first failure forever.
//
// Replay (real sockets, real time): 32 goroutines ask for the client at
// once, over and over until they have it, while its dependencies come up
// one step per attempt, as they do at start-up: at the first attempt the
// configuration is not loaded (the builder indexes an empty endpoint list
// and panics), at the second the monitor's port is closed (connection
// refused), at the third the monitor answers 503 (starting), from the
// fourth on it answers 200. The client is pulse's lazy.Value with back-off
// from 10 ms to 50 ms.
//
// Pass criterion: exactly 4 attempts for 32 callers (one shared attempt at
// a time); no call ever returns a nil client with a nil error; callers see
// the panic as a *lazy.PanicError carrying the runtime error, the refusal
// (ECONNREFUSED) and the 503 as errors, and *lazy.RetryError while back-off
// holds; in the end every caller holds the same client, and it works.

// ap09Env is the client's world: the endpoint list a configuration
// provides, and the monitor it points at. Advance moves it one step on.
type ap09Env struct {
	t         *testing.T
	mu        sync.Mutex
	endpoints []string
	addr      string
	step      int
	ready     atomic.Bool
	srv       *http.Server
	served    chan struct{}
}

func newAP09Env(t *testing.T) *ap09Env {
	t.Helper()
	// A free port, closed until step 2: connections to it are refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &ap09Env{t: t, addr: ln.Addr().String()}
	ln.Close()
	t.Cleanup(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.srv != nil {
			e.srv.Close()
			<-e.served
		}
	})
	return e
}

func (e *ap09Env) Advance() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.step++
	switch e.step {
	case 1: // the configuration arrives
		e.endpoints = []string{e.addr}
	case 2: // the monitor starts, not ready yet
		ln, err := net.Listen("tcp", e.addr)
		if err != nil {
			e.t.Errorf("re-listen on %s: %v", e.addr, err)
			return
		}
		e.srv = &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !e.ready.Load() {
				http.Error(w, "starting", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok")
		})}
		e.served = make(chan struct{})
		go func() { defer close(e.served); e.srv.Serve(ln) }()
	case 3: // ready
		e.ready.Store(true)
	}
}

// ap09Client is the heartbeat client being initialised.
type ap09Client struct {
	base string
	http *http.Client
}

// Ping uses the client: one request to the monitor.
func (c *ap09Client) Ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/livez", nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("monitor answered %s", resp.Status)
	}
	return nil
}

// newClient is the builder, as the services in the incident wrote it.
func (e *ap09Env) newClient(ctx context.Context) (*ap09Client, error) {
	e.mu.Lock()
	eps := e.endpoints
	e.mu.Unlock()
	c := &ap09Client{base: "http://" + eps[0], http: &http.Client{Timeout: time.Second}} // panics while the config is not loaded
	if err := c.Ping(ctx); err != nil {
		return nil, fmt.Errorf("heartbeat client: %w", err)
	}
	return c, nil
}

const ap09Callers = 32

func TestAP09RetriableInit(t *testing.T) {
	env := newAP09Env(t)
	var attempts atomic.Int64
	v := lazy.New(func(ctx context.Context) (*ap09Client, error) {
		attempts.Add(1)
		defer env.Advance() // the world moves on one step per attempt
		return env.newClient(ctx)
	}, lazy.WithBackoff(backoff.Policy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}), lazy.WithAttemptTimeout(2*time.Second))
	defer v.Close()

	var (
		mu                             sync.Mutex
		calls, nilNil                  int
		panics, refused, starting, ret int
		other                          []string
		got                            [ap09Callers]*ap09Client
	)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range ap09Callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, err := v.Get(ctx)
				mu.Lock()
				calls++
				var pe *lazy.PanicError
				var re *lazy.RetryError
				var rt runtime.Error
				switch {
				case err == nil && c == nil:
					nilNil++
				case err == nil:
					got[i] = c
				case errors.As(err, &re):
					ret++
				case errors.As(err, &pe) && errors.As(err, &rt) && strings.Contains(rt.Error(), "index out of range"):
					panics++
				case errors.Is(err, syscall.ECONNREFUSED):
					refused++
				case strings.Contains(err.Error(), "503 Service Unavailable"):
					starting++
				default:
					other = append(other, err.Error())
				}
				mu.Unlock()
				if err == nil && c != nil {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d callers, %d calls, %d attempts: %d saw the panic, %d the refusal, %d the 503, %d a RetryError during back-off, %d other errors, %d (nil, nil)",
		ap09Callers, calls, attempts.Load(), panics, refused, starting, ret, len(other), nilNil)
	if attempts.Load() != 4 {
		t.Errorf("%d attempts, want exactly 4 (3 failures, then success) shared by every caller", attempts.Load())
	}
	if nilNil != 0 {
		t.Errorf("%d calls returned a nil client with a nil error", nilNil)
	}
	if panics == 0 || refused == 0 || starting == 0 || ret == 0 {
		t.Errorf("callers saw panic %d, refused %d, 503 %d, RetryError %d times; want each cause reported", panics, refused, starting, ret)
	}
	if len(other) != 0 {
		t.Errorf("unexpected errors: %q", other)
	}
	for i, c := range got {
		if c == nil || c != got[0] {
			t.Fatalf("caller %d holds %p, caller 0 %p: want every caller to hold the same client", i, c, got[0])
		}
	}
	if err := got[0].Ping(context.Background()); err != nil {
		t.Errorf("the client does not work: %v", err)
	}
}

// TestAP09Naive builds the client the seed's ways through the same world.
//
// sync.Once (the incident): the first Do panics (the first caller would
// crash the process; here it recovers); the Once is spent, so however the
// world recovers, every later caller gets a nil client. sync.OnceValues (the
// seed's fix): the panic is re-raised to every later caller, forever. Both
// fail the criterion: after the world is up the callers still have no
// client, and only one attempt was ever made.
func TestAP09Naive(t *testing.T) {
	t.Run("sync.Once", func(t *testing.T) {
		env := newAP09Env(t)
		var attempts atomic.Int64
		var once sync.Once
		var client *ap09Client
		GetHeartbeatClient := func() *ap09Client { // ❌ the seed
			once.Do(func() {
				attempts.Add(1)
				defer env.Advance()
				//pulselint:ignore oncepanic the naive variant replays the seed's anti-pattern on purpose
				client, _ = env.newClient(context.Background())
			})
			return client
		}
		nilClients, crashes := 0, 0
		for range 8 { // the world comes up during these calls, step by step
			func() {
				defer func() {
					if recover() != nil {
						crashes++
					}
				}()
				if c := GetHeartbeatClient(); c == nil {
					nilClients++
				}
			}()
			env.Advance()
		}
		ping := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic: %v", p)
				}
			}()
			return GetHeartbeatClient().Ping(context.Background())
		}
		err := ping()
		t.Logf("sync.Once: %d attempt(s); %d of 8 calls crashed, %d got nil; with the monitor up, using the client: %v", attempts.Load(), crashes, nilClients, err)
		if attempts.Load() != 1 || err == nil || !strings.Contains(err.Error(), "nil pointer") {
			t.Errorf("the seed's sync.Once recovered: the replay does not bite")
		}
	})

	t.Run("sync.OnceValues", func(t *testing.T) {
		env := newAP09Env(t)
		var attempts atomic.Int64
		//pulselint:ignore oncepanic the naive variant replays the seed's anti-pattern on purpose
		get := sync.OnceValues(func() (*ap09Client, error) { // ❌ the seed's fix
			attempts.Add(1)
			defer env.Advance()
			return env.newClient(context.Background())
		})
		panicked := 0
		for range 8 {
			func() {
				defer func() {
					if recover() != nil {
						panicked++
					}
				}()
				get()
			}()
			env.Advance()
		}
		t.Logf("sync.OnceValues: %d attempt(s); all %d later calls re-panicked with the first panic even with the monitor up: %v", attempts.Load(), panicked, panicked == 8)
		if attempts.Load() != 1 || panicked != 8 {
			t.Errorf("the seed's sync.OnceValues recovered: the replay does not bite")
		}
	})
}
