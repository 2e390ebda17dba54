package health

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fb4b1dcc/pulse/status"
)

// Check is one named health check.
type Check struct {
	// Name identifies the check in verbose output, JSON and metrics.
	Name string
	// Func runs the check. It must honour ctx: a run that overruns Timeout
	// is abandoned (reported unhealthy and counted) but its goroutine can
	// only exit when Func returns. Return nil for healthy, an error for
	// unhealthy, or an error made with Degraded for degraded.
	// A Check with a nil Func is a manual check, set with Health.Set.
	Func func(ctx context.Context) error
	// Interval between the end of one run and the start of the next
	// (default 10s).
	Interval time.Duration
	// Timeout of one run (default: Interval/2, at most 5s).
	Timeout time.Duration
	// AffectsLiveness makes a failure of this check fail /livez too. Use it
	// only for conditions a restart would cure (a deadlocked worker), never
	// for a dependency: a database outage must not restart every pod.
	AffectsLiveness bool
	// Groups are the gRPC service names this check contributes to; every
	// check also contributes to the overall state (service "").
	Groups []string
}

// Degraded wraps err so that a check reports Degraded instead of Unhealthy:
// the service works but should be taken out of rotation (or kept, with
// Options.DegradedIsReady).
func Degraded(err error) error {
	if err == nil {
		err = errors.New("degraded")
	}
	return &degradedError{err}
}

// Degradedf is Degraded(fmt.Errorf(format, args...)).
func Degradedf(format string, args ...any) error { return Degraded(fmt.Errorf(format, args...)) }

type degradedError struct{ err error }

func (e *degradedError) Error() string { return e.err.Error() }
func (e *degradedError) Unwrap() error { return e.err }

// statusOf maps a check's returned error to a Status.
func statusOf(err error) status.Status {
	if err == nil {
		return status.Healthy
	}
	var d *degradedError
	if errors.As(err, &d) {
		return status.Degraded
	}
	return status.Unhealthy
}

func (c *Check) normalise() error {
	if c.Name == "" {
		return errors.New("health: check has no name")
	}
	if c.Interval < 0 || c.Timeout < 0 {
		return fmt.Errorf("health: check %q: negative interval or timeout", c.Name)
	}
	if c.Func == nil {
		return nil
	}
	if c.Interval == 0 {
		c.Interval = 10 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = min(c.Interval/2, 5*time.Second)
	}
	return nil
}
