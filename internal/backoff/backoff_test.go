package backoff

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBound(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := p.Bound(i); got != w*time.Millisecond {
			t.Errorf("Bound(%d) = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	if got := p.Bound(10_000); got != time.Second {
		t.Errorf("huge attempt: %v", got)
	}
	if got := (Policy{}).Bound(0); got != 100*time.Millisecond {
		t.Errorf("zero policy: %v", got)
	}
}

func TestFullJitter(t *testing.T) {
	p := Policy{Initial: time.Second, Max: time.Minute}
	if d := p.Delay(3, 0); d != 0 {
		t.Errorf("r=0: %v", d)
	}
	if d := p.Delay(3, 0.5); d != 4*time.Second {
		t.Errorf("r=0.5 attempt 3: %v, want 4s", d)
	}
	half := 0.5
	p.Jitter = &half
	if d := p.Delay(0, 0); d != 500*time.Millisecond {
		t.Errorf("half jitter floor: %v", d)
	}
	p.Jitter = NoJitter()
	if d := p.Delay(2, 0.9); d != 4*time.Second {
		t.Errorf("no jitter: %v", d)
	}
}

func TestBackoffSequence(t *testing.T) {
	b := New(Policy{Initial: time.Second, Max: 8 * time.Second, Jitter: NoJitter()})
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
	}
	want := []time.Duration{1, 2, 4, 8, 8}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("sequence %v", got)
		}
	}
	if b.Attempt() != 5 {
		t.Fatal(b.Attempt())
	}
	b.Reset()
	if d := b.Next(); d != time.Second {
		t.Fatalf("after reset %v", d)
	}
	// Full jitter spreads: 1000 draws at attempt 3 cover the range.
	j := New(Policy{Initial: time.Second, Max: time.Minute})
	var lo, hi int
	for range 1000 {
		j.attempt = 3
		d := j.Next()
		if d < 0 || d > 8*time.Second {
			t.Fatalf("delay %v out of [0, 8s]", d)
		}
		if d < 2*time.Second {
			lo++
		}
		if d > 6*time.Second {
			hi++
		}
	}
	if lo < 150 || hi < 150 {
		t.Fatalf("jitter not spread: %d below 2s, %d above 6s of 1000", lo, hi)
	}
}
