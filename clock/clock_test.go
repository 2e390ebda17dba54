package clock

import (
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRealClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := OrReal(nil)
		start := c.Now()
		tm := c.NewTimer(time.Second)
		tk := c.NewTicker(300 * time.Millisecond)
		defer tk.Stop()
		at := <-tm.C()
		if at.Sub(start) != time.Second || c.Since(start) != time.Second {
			t.Fatalf("timer fired after %v", at.Sub(start))
		}
		if tm.Stop() {
			t.Fatal("Stop on a fired timer reported active")
		}
		if tm.Reset(time.Second) {
			t.Fatal("Reset of a fired timer reported active")
		}
		<-tm.C()
		if c.Since(start) != 2*time.Second {
			t.Fatalf("reset timer fired at %v", c.Since(start))
		}
		tk.Reset(time.Minute)
		select {
		case <-tk.C():
		default:
		}
		<-tk.C()
		if c.Since(start) != 2*time.Second+time.Minute {
			t.Fatalf("reset ticker fired at %v", c.Since(start))
		}
	})
}
