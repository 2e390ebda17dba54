package clocktest

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTimersFireInOrder(t *testing.T) {
	f := NewFake(time.Time{})
	start := f.Now()
	a := f.NewTimer(2 * time.Second)
	b := f.NewTimer(time.Second)
	if f.Pending() != 2 {
		t.Fatalf("pending %d", f.Pending())
	}
	f.Advance(1500 * time.Millisecond)
	select {
	case at := <-b.C():
		if at.Sub(start) != time.Second {
			t.Fatalf("b fired at +%v", at.Sub(start))
		}
	default:
		t.Fatal("b did not fire")
	}
	select {
	case <-a.C():
		t.Fatal("a fired early")
	default:
	}
	if !a.Stop() || a.Stop() {
		t.Fatal("Stop: want true then false")
	}
	f.Advance(time.Hour)
	select {
	case <-a.C():
		t.Fatal("stopped timer fired")
	default:
	}
	if f.Since(start) != time.Hour+1500*time.Millisecond {
		t.Fatalf("since %v", f.Since(start))
	}
}

func TestTickerAndReset(t *testing.T) {
	f := NewFake(time.Time{})
	tk := f.NewTicker(time.Second)
	n := 0
	for range 5 {
		f.Advance(time.Second)
		select {
		case <-tk.C():
			n++
		default:
		}
	}
	if n != 5 {
		t.Fatalf("ticker fired %d times in 5s", n)
	}
	tk.Reset(10 * time.Second)
	f.Advance(9 * time.Second)
	select {
	case <-tk.C():
		t.Fatal("reset ticker fired early")
	default:
	}
	tk.Stop()
	if f.Pending() != 0 {
		t.Fatalf("pending after stop: %d", f.Pending())
	}
	tm := f.NewTimer(time.Second)
	f.Advance(time.Second) // fires, value sits in the channel
	tm.Reset(time.Second)  // drains the stale fire
	select {
	case <-tm.C():
		t.Fatal("stale fire survived Reset")
	default:
	}
	if d, ok := f.NextDeadline(); !ok || d.Sub(f.Now()) != time.Second {
		t.Fatalf("next deadline %v %v", d, ok)
	}
}
