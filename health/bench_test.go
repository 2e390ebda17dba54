package health

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// benchHealth returns a running Health with 20 checks, one of them hung
// forever, and a func that stops it.
func benchHealth(b *testing.B) (*Health, func()) {
	b.Helper()
	release := make(chan struct{})
	var checks []Check
	for i := range 20 {
		f := func(context.Context) error { return nil }
		if i == 7 {
			f = func(context.Context) error { <-release; return nil }
		}
		checks = append(checks, Check{Name: fmt.Sprintf("dep%02d", i), Func: f, Interval: time.Second, Timeout: 50 * time.Millisecond})
	}
	h, err := New(Options{}, checks...)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	time.Sleep(100 * time.Millisecond) // let the hung check time out once
	return h, func() { close(release); cancel(); <-done }
}

// nopWriter is a reusable ResponseWriter so that allocations counted are
// the handler's own.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

func bare(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }

// BenchmarkLivezHandler compares the handler alone against a bare
// http.HandlerFunc writing "ok": allocations per request must be 0.
func BenchmarkLivezHandler(b *testing.B) {
	h, stop := benchHealth(b)
	defer stop()
	req, _ := http.NewRequest(http.MethodGet, "/livez", nil)
	w := &nopWriter{h: http.Header{}}
	live := h.LiveHandler()
	bareH := http.HandlerFunc(bare)
	b.ReportAllocs()
	var bareNS, pulseNS int64
	for b.Loop() {
		t0 := time.Now()
		bareH.ServeHTTP(w, req)
		t1 := time.Now()
		live.ServeHTTP(w, req)
		t2 := time.Now()
		bareNS += int64(t1.Sub(t0))
		pulseNS += int64(t2.Sub(t1))
	}
	b.ReportMetric(float64(bareNS)/float64(b.N), "bare-ns/req")
	b.ReportMetric(float64(pulseNS)/float64(b.N), "livez-ns/req")
	if allocs := testing.AllocsPerRun(1000, func() { live.ServeHTTP(w, req) }); allocs != 0 {
		b.Fatalf("livez handler allocates %.1f times per request, want 0", allocs)
	}
}

// BenchmarkLivez drives both handlers over real loopback HTTP/1.1 with
// keep-alive, from parallel clients, alternating requests so both see the
// same machine noise, and reports livez throughput as a ratio of the bare
// handler's (goal ≥ 0.9).
func BenchmarkLivez(b *testing.B) {
	h, stop := benchHealth(b)
	defer stop()
	serve := func(hd http.Handler) (string, func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		s := &http.Server{Handler: hd, ReadHeaderTimeout: 5 * time.Second}
		go s.Serve(ln)
		return "http://" + ln.Addr().String(), func() { s.Close() }
	}
	bareURL, stopBare := serve(http.HandlerFunc(bare))
	defer stopBare()
	mux := http.NewServeMux()
	h.Register(mux)
	pulseURL, stopPulse := serve(mux)
	defer stopPulse()
	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	do := func(url string) time.Duration {
		t0 := time.Now()
		resp, err := client.Get(url)
		if err != nil {
			b.Error(err)
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Errorf("%s: %d", url, resp.StatusCode)
		}
		return time.Since(t0)
	}
	var bareNS, pulseNS atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if i%2 == 0 {
				bareNS.Add(int64(do(bareURL)))
				pulseNS.Add(int64(do(pulseURL + "/livez")))
			} else {
				pulseNS.Add(int64(do(pulseURL + "/livez")))
				bareNS.Add(int64(do(bareURL)))
			}
			i++
		}
	})
	b.ReportMetric(float64(bareNS.Load())/float64(pulseNS.Load()), "livez/bare-throughput")
}
