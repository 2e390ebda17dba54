package healthep

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fb4b1dcc/pulse/bench/internal/child"
	"github.com/fb4b1dcc/pulse/bench/internal/sysinfo"
	"github.com/fb4b1dcc/pulse/health"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/wire"
)

// Role names.
const (
	ServerRole = "http-servers"
	LoadRole   = "http-load"
)

// Token is the beat endpoint's bearer token.
const Token = "http-beat-bench-token-0123456789"

// Servers are the addresses of the four endpoints.
type Servers struct {
	Bare, Livez, Bare204, Beat string
	Checks                     int
}

// ServerMain serves the endpoints until stdin closes.
func ServerMain(ctx context.Context, c *child.Conn) (any, error) {
	release := make(chan struct{})
	var checks []health.Check
	for i := range 20 {
		f := func(context.Context) error { return nil }
		if i == 7 {
			// Hung forever: abandoned at every timeout.
			f = func(ctx context.Context) error {
				select {
				case <-release:
				case <-ctx.Done():
					<-release
				}
				return nil
			}
		}
		checks = append(checks, health.Check{Name: fmt.Sprintf("dep%02d", i), Func: f, Interval: time.Second, Timeout: 50 * time.Millisecond})
	}
	h, err := health.New(health.Options{}, checks...)
	if err != nil {
		return nil, err
	}
	var beats atomic.Int64
	recv, err := ingest.New(ingest.Config{Tokens: map[string][]string{"web": {Token}},
		Sink:       ingest.SinkFunc(func(obs []ingest.Observation) { beats.Add(int64(len(obs))) }),
		Directives: func(string, string) wire.Directive { return wire.Directive{Interval: time.Second} }})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		close(release)
		cancel()
		wg.Wait()
	}()
	wg.Add(2)
	go func() { defer wg.Done(); _ = h.Run(ctx) }()
	go func() { defer wg.Done(); _ = recv.Run(ctx) }()

	handlers := []http.Handler{
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }),
		h.LiveHandler(),
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
		}),
		recv.Handler(),
	}
	var addrs []string
	var srvs []*http.Server
	for _, hd := range handlers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		srv := &http.Server{Handler: hd, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		srvs = append(srvs, srv)
		addrs = append(addrs, "http://"+ln.Addr().String())
		wg.Add(1)
		go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	}
	defer func() {
		for _, s := range srvs {
			_ = s.Close()
		}
	}()
	// Let the hung check reach its first timeout before any load.
	time.Sleep(200 * time.Millisecond)
	if err := c.Send(Servers{Bare: addrs[0], Livez: addrs[1], Bare204: addrs[2], Beat: addrs[3] + wire.BeatPath, Checks: len(checks)}); err != nil {
		return nil, err
	}
	for range c.Commands() {
		_ = c.Send(map[string]int64{"beats": beats.Load(), "cpu_ns": int64(sysinfo.SelfCPU())})
	}
	return nil, nil
}

// LoadCmd is one load run.
type LoadCmd struct {
	URL   string
	Post  bool // POST a distinct beat body per request
	Conns int
	Secs  float64
}

// LoadResult is what one load run measured.
type LoadResult struct {
	URL        string
	Requests   int64
	Errors     int64
	Secs       float64
	P50, P99   float64 // seconds
	BadStatus  int64
	StatusSeen int
}

// LoadMain runs load on command.
func LoadMain(ctx context.Context, c *child.Conn) (any, error) {
	epoch := uint64(time.Now().UnixNano())
	var seq atomic.Uint64
	for raw := range c.Commands() {
		var cmd LoadCmd
		if err := json.Unmarshal(raw, &cmd); err != nil {
			return nil, err
		}
		tr := &http.Transport{MaxIdleConnsPerHost: cmd.Conns, MaxConnsPerHost: cmd.Conns, DisableCompression: true}
		cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		deadline := time.Now().Add(time.Duration(cmd.Secs * float64(time.Second)))
		var (
			wg                 sync.WaitGroup
			mu                 sync.Mutex
			lat                []float64
			reqs, errs, badSts atomic.Int64
			lastStatus         atomic.Int64
		)
		t0 := time.Now()
		for g := range cmd.Conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				local := make([]float64, 0, 1<<16)
				inst := "h-" + strconv.Itoa(g)
				var body []byte
				for time.Now().Before(deadline) && ctx.Err() == nil {
					var req *http.Request
					if cmd.Post {
						s := seq.Add(1)
						body = fmt.Appendf(body[:0], `{"service":"web","instance":%q,"epoch":"%d","seq":%d,"sent_at_ns":"%d","status":"healthy","interval_ms":1000}`,
							inst, epoch, s, int64(s)*1e6)
						req, _ = http.NewRequest(http.MethodPost, cmd.URL, byteReader(body))
						req.Header.Set("Authorization", "Bearer "+Token)
						req.Header.Set("Content-Type", "application/json")
						req.ContentLength = int64(len(body))
					} else {
						req, _ = http.NewRequest(http.MethodGet, cmd.URL, nil)
					}
					st := time.Now()
					resp, err := cl.Do(req)
					if err != nil {
						errs.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode >= 300 {
						badSts.Add(1)
						lastStatus.Store(int64(resp.StatusCode))
					}
					local = append(local, time.Since(st).Seconds())
					reqs.Add(1)
				}
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		secs := time.Since(t0).Seconds()
		tr.CloseIdleConnections()
		slices.Sort(lat)
		res := LoadResult{URL: cmd.URL, Requests: reqs.Load(), Errors: errs.Load(), Secs: secs, BadStatus: badSts.Load(), StatusSeen: int(lastStatus.Load())}
		if len(lat) > 0 {
			res.P50 = lat[len(lat)/2]
			res.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
		}
		if err := c.Send(res); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

type bodyReader struct {
	b []byte
	i int
}

func byteReader(b []byte) io.ReadCloser { return &bodyReader{b: b} }

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.i >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.i:])
	r.i += n
	return n, nil
}

func (r *bodyReader) Close() error { return nil }
