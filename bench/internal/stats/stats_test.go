package stats

import (
	"math"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestQuantile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	for _, c := range []struct{ q, want float64 }{{0, 1}, {0.5, 3}, {1, 5}, {0.25, 2}, {0.9, 4.6}} {
		if got := Quantile(xs, c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if xs[0] != 5 {
		t.Error("Quantile sorted its input")
	}
	if !math.IsNaN(Quantile(nil, 0.5)) {
		t.Error("Quantile of nothing is not NaN")
	}
}

func TestFormats(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Count(1234567), "1,234,567"}, {Count(-1000), "-1,000"}, {Count(999), "999"},
		{Secs(0.0000123), "12 µs"}, {Secs(0.25), "250.0 ms"}, {Secs(8.4), "8.40 s"},
		{Bytes(512), "512 B"}, {Bytes(2048), "2.0 KiB"}, {Rate(250000.4), "250,000/s"},
		{Ratio(0.5), "0.50×"}, {Ratio(math.Inf(1)), "–"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
