package lazy

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fb4b1dcc/pulse/internal/backoff"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type client struct{ id int }

// AP-09 replay: the first attempts fail or panic; 100 concurrent callers
// never see a nil client with a nil error; a later attempt succeeds and then
// every caller gets the same working client. Attempts are shared, so the
// function runs exactly as often as the script says.
func TestRetriesAfterErrorsAndPanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		v := New(func(ctx context.Context) (*client, error) {
			n := calls.Add(1)
			time.Sleep(5 * time.Millisecond) // let callers pile onto the attempt
			switch n {
			case 1, 2:
				return nil, errors.New("dial tcp 10.0.0.1:5432: connection refused")
			case 3:
				var m map[string]int
				//lint:ignore SA5000 the test needs a real runtime panic, as in INC-2023-093
				m["boom"] = 1
			}
			return &client{id: int(n)}, nil
		}, WithBackoff(backoff.Policy{Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond, Jitter: backoff.NoJitter()}))
		defer v.Close()

		var (
			wg                        sync.WaitGroup
			nilWithoutErr, panicsSeen atomic.Int32
			got                       sync.Map
		)
		for g := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					c, err := v.Get(context.Background())
					if err == nil {
						if c == nil {
							nilWithoutErr.Add(1)
						}
						got.Store(g, c)
						return
					}
					if c != nil {
						t.Errorf("caller %d got a value with an error: %v", g, err)
					}
					var pe *PanicError
					if errors.As(err, &pe) {
						panicsSeen.Add(1)
					}
					time.Sleep(3 * time.Millisecond)
				}
			}()
		}
		wg.Wait()
		if n := nilWithoutErr.Load(); n != 0 {
			t.Fatalf("%d callers got a nil client without an error", n)
		}
		if panicsSeen.Load() == 0 {
			t.Fatal("no caller saw the panic as a *PanicError")
		}
		if c := calls.Load(); c != 4 {
			t.Fatalf("initialisation ran %d times, want 4 (attempts must be shared)", c)
		}
		got.Range(func(_, c any) bool {
			if c.(*client).id != 4 {
				t.Fatalf("caller got client %d, want the one built by attempt 4", c.(*client).id)
			}
			return true
		})
		// After success the value is cached: no more attempts.
		if _, err := v.Get(context.Background()); err != nil || calls.Load() != 4 {
			t.Fatalf("Get after success: err=%v calls=%d", err, calls.Load())
		}
	})
}

func TestPanicErrorKeepsValueAndStack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := New(func(context.Context) (int, error) { panic("pool exhausted") })
		defer v.Close()
		_, err := v.Get(context.Background())
		var pe *PanicError
		if !errors.As(err, &pe) {
			t.Fatalf("want *PanicError, got %T %v", err, err)
		}
		if pe.Value != "pool exhausted" || !strings.Contains(string(pe.Stack), "lazy_test.go") {
			t.Fatalf("panic value %v / stack missing the panicking frame:\n%s", pe.Value, pe.Stack)
		}
	})
}

func TestBackoffHoldsRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		v := New(func(context.Context) (int, error) {
			calls.Add(1)
			return 0, errors.New("down")
		}, WithBackoff(backoff.Policy{Initial: time.Second, Max: 8 * time.Second, Jitter: backoff.NoJitter()}))
		defer v.Close()
		if _, err := v.Get(context.Background()); err == nil || err.Error() != "down" {
			t.Fatalf("first Get: %v", err)
		}
		_, err := v.Get(context.Background())
		var re *RetryError
		if !errors.As(err, &re) || re.NextRetry != time.Second || re.Attempts != 1 {
			t.Fatalf("second Get within back-off: %v", err)
		}
		if calls.Load() != 1 {
			t.Fatalf("a retry ran inside the back-off window")
		}
		time.Sleep(time.Second)
		v.Get(context.Background())
		if calls.Load() != 2 {
			t.Fatalf("no retry after the back-off elapsed")
		}
		_, err = v.Get(context.Background())
		if !errors.As(err, &re) || re.NextRetry != 2*time.Second {
			t.Fatalf("back-off did not grow: %v", err)
		}
	})
}

func TestCallerCancelDoesNotCancelSharedAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := New(func(ctx context.Context) (string, error) {
			select {
			case <-time.After(time.Second):
				return "ready", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		})
		defer v.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := v.Get(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("impatient caller: %v", err)
		}
		s, err := v.Get(context.Background())
		if err != nil || s != "ready" {
			t.Fatalf("patient caller: %q %v", s, err)
		}
	})
}

func TestAttemptTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		v := New(func(ctx context.Context) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		}, WithAttemptTimeout(2*time.Second))
		defer v.Close()
		start := time.Now()
		_, err := v.Get(context.Background())
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 2*time.Second {
			t.Fatalf("err %v after %v, want deadline exceeded after 2s", err, time.Since(start))
		}
	})
}

func TestCloseCancelsAndInvalidateRebuilds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		v := New(func(ctx context.Context) (int32, error) { return calls.Add(1), nil })
		if n, _ := v.Get(context.Background()); n != 1 {
			t.Fatalf("got %d", n)
		}
		v.Invalidate()
		if n, _ := v.Get(context.Background()); n != 2 {
			t.Fatalf("after Invalidate got %d, want a rebuilt value", n)
		}
		v.Close()
		v.Close()
		if _, err := v.Get(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("Get after Close: %v", err)
		}

		started := make(chan struct{})
		w := New(func(ctx context.Context) (int, error) {
			close(started)
			<-ctx.Done()
			return 0, ctx.Err()
		})
		errc := make(chan error, 1)
		go func() { _, err := w.Get(context.Background()); errc <- err }()
		<-started
		w.Close() // must cancel the attempt and wait for it
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("waiting caller after Close: %v", err)
		}
	})
}
