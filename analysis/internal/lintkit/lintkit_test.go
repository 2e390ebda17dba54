package lintkit

import (
	"slices"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWords(t *testing.T) {
	for in, want := range map[string][]string{
		"sendHTTPHeartbeat2": {"send", "http", "heartbeat", "2"},
		"KEEP_ALIVE_TIME":    {"keep", "alive", "time"},
		"health-go":          {"health", "go"},
		"isHealthy":          {"is", "healthy"},
		"x":                  {"x"},
		"":                   nil,
	} {
		if got := Words(in); !slices.Equal(got, want) {
			t.Errorf("Words(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHealthLike(t *testing.T) {
	for in, want := range map[string]bool{
		"startHeartbeat":    true,
		"sendKeepAliveLoop": true,
		"HealthChecker":     true,
		"Prober":            true,
		"pingPeer":          true,
		"mapping":           false, // "ping" only as a whole word
		"shipping":          false,
		"fetchOrders":       false,
		"status":            false,
	} {
		if got := HealthLike(in); got != want {
			t.Errorf("HealthLike(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestHealthPath(t *testing.T) {
	for in, want := range map[string]bool{
		"/healthz":          true,
		"GET /readyz":       true,
		"/proxy/health":     true,
		"example.com/livez": true,
		"/status/":          true,
		"/api/v1/ping":      true,
		"/orders":           false,
		"/healthy-orders":   false,
		"healthz":           false, // not a path
		"/metrics":          false,
	} {
		if got := HealthPath(in); got != want {
			t.Errorf("HealthPath(%q) = %v, want %v", in, got, want)
		}
	}
}
