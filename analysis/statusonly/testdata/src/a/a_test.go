package a

import (
	"net/http"
	"testing"
)

// Tests assert status codes of handlers; they are not probes.
func TestHealthEndpoint(t *testing.T) {
	resp, err := http.Get("http://127.0.0.1:1/healthz")
	if err != nil {
		t.Skip("no server")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
}
