package ingest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzHTTPBeat: the JSON beat endpoint never panics and never answers 5xx
// for any body; bad input gets a 4xx and is counted.
func FuzzHTTPBeat(f *testing.F) {
	for _, s := range []string{
		`{"service":"svc","instance":"a","epoch":1,"seq":1,"status":"healthy"}`,
		`{"service":"svc","instance":"a","epoch":1,"seq":2,"status":"degraded","reason":8,"interval_ms":1000,"rtt_us":300,"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}`,
		`{"service":"svc"}`, `{`, `[]`, `null`, `{"service":"svc","instance":"` + strings.Repeat("x", 200) + `","epoch":1,"seq":1}`,
		`{"service":"svc","instance":"a","epoch":-1,"seq":1e99}`, `{"status":"sleepy"}`, "\x00\xff",
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	sink := SinkFunc(func([]Observation) {})
	r, err := New(Config{Sink: sink, Tokens: map[string][]string{"svc": {testToken}}, QueueSize: 1 << 10})
	if err != nil {
		f.Fatal(err)
	}
	h := r.Handler()
	f.Fuzz(func(t *testing.T, body []byte, auth bool) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/beat", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		if auth {
			req.Header.Set("Authorization", "Bearer "+testToken)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body.String())
		}
		if rec.Code >= 400 && !strings.Contains(rec.Body.String(), "error") {
			t.Fatalf("status %d without an error body: %q", rec.Code, rec.Body.String())
		}
	})
}
