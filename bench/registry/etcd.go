package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/fb4b1dcc/pulse/bench/internal/child"
	"github.com/fb4b1dcc/pulse/bench/internal/sysinfo"
)

// Role names.
const (
	EtcdServerRole = "etcd-server"
	EtcdLoadRole   = "etcd-load"
)

// ServerStats is what a server child reports about itself.
type ServerStats struct {
	HeapAlloc int64 // live heap after a GC
	HeapSys   int64
	RSS       int64
	CPU       float64 // seconds so far
	// Pulse only.
	Accepted  [4]uint64 // by transport
	Judged    uint64    // observations handed to the monitor
	Drops     map[string]uint64
	Instances int
	States    map[string]int
}

func selfStats() ServerStats {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, _ := sysinfo.ProcRSS(os.Getpid())
	return ServerStats{HeapAlloc: int64(ms.HeapAlloc), HeapSys: int64(ms.HeapSys), RSS: rss, CPU: sysinfo.SelfCPU().Seconds()}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// EtcdServerMain runs a single-member etcd with its defaults (data in a
// temporary directory, fsync on), logging silenced, until stdin closes. It
// answers every command with its ServerStats.
func EtcdServerMain(ctx context.Context, c *child.Conn) (any, error) {
	dir, err := os.MkdirTemp("", "pulse-bench-etcd-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cp, err := freePort()
	if err != nil {
		return nil, err
	}
	pp, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = "bench"
	cfg.Dir = dir
	cu, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(cp))
	pu, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(pp))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting etcd: %w", err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("etcd not ready after 60s")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := c.Send(map[string]string{"endpoint": cu.String()}); err != nil {
		return nil, err
	}
	for {
		select {
		case _, ok := <-c.Commands():
			if !ok {
				return nil, nil
			}
			if err := c.Send(selfStats()); err != nil {
				return nil, err
			}
		case err := <-e.Err():
			return nil, fmt.Errorf("etcd: %w", err)
		}
	}
}

// LoadInput configures a load generator.
type LoadInput struct {
	Endpoint string // etcd
	UDP      string // pulse UDP beats
	GRPC     string // pulse gRPC (beats and watch)
	N        int
	TTL      int           // etcd lease TTL, seconds
	Interval time.Duration // pulse beat interval
	Workers  int           // etcd registration concurrency
	// RegisterTimeout bounds registration (etcd).
	RegisterTimeout time.Duration
	// NoAcks (pulse UDP) leaves ACKs unread, so the load generator spends
	// its CPU on sending (runs without death measurements).
	NoAcks bool
}

// LoadCmd is a command to a load generator.
type LoadCmd struct {
	Mark bool `json:"mark,omitempty"` // report counters
	// Kill stops Count instances starting at From, at once, and reports
	// when each one's removal became visible (within Wait).
	Kill  bool          `json:"kill,omitempty"`
	From  int           `json:"from,omitempty"`
	Count int           `json:"count,omitempty"`
	Wait  time.Duration `json:"wait,omitempty"`
	// Blast (pulse UDP) sends beats for every instance as fast as it can
	// for Secs seconds, ignoring the schedule.
	Blast bool    `json:"blast,omitempty"`
	Secs  float64 `json:"secs,omitempty"`
}

// Counters are a load generator's running totals.
type Counters struct {
	At         time.Time
	Registered int
	Renewals   int64 // etcd: keep-alive responses; pulse: ACKs of accepted beats
	Sent       int64 // pulse: beats sent
	Expired    int   // etcd: leases lost without being killed; pulse: down events about live instances
	Lagging    int64 // pulse: schedule slots sent more than an interval late
	Watched    int64 // delete/down events seen by the watcher
	Other      map[string]int64
}

// KillResult is what a kill measured.
type KillResult struct {
	Count int
	// Seen is how many removals the watcher saw within Wait.
	Seen int
	// FromLast is, per seen instance, seconds from its last renewal (etcd:
	// keep-alive response; pulse: ACK) to the removal being visible.
	FromLast []float64
	// AllVisible is seconds from the kill to the last removal seen.
	AllVisible float64
	// P50FromLast is the median of FromLast (kept when FromLast is
	// dropped to keep the saved figures small).
	P50FromLast float64
	// States (pulse) the killed instances ended in, e.g. down, protected.
	States map[string]int
	// Held (pulse) is how many killed instances were reported held by
	// protection (state protected, or a hold event of source protection)
	// before their removal; AllHeld is seconds from the kill to the last
	// such report.
	Held    int     `json:",omitempty"`
	AllHeld float64 `json:",omitempty"`
}

// EtcdLoadMain registers N leases with keys and keeps them alive with the
// client library until stdin closes.
func EtcdLoadMain(ctx context.Context, c *child.Conn) (any, error) {
	var in LoadInput
	if err := c.Input(&in); err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{in.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	type lease struct {
		id     clientv3.LeaseID
		cancel context.CancelFunc
		last   atomic.Int64 // unix nanos of the last keep-alive response
		killed atomic.Bool
		gone   atomic.Bool
	}
	leases := make([]*lease, in.N)
	deleted := make([]atomic.Int64, in.N)
	var renewals, expired, watched atomic.Int64
	var wg sync.WaitGroup
	lctx, lcancel := context.WithCancel(ctx)
	defer func() { lcancel(); wg.Wait() }()

	// The watcher: every removal of a registration key.
	wch := cli.Watch(lctx, "reg/", clientv3.WithPrefix())
	wg.Add(1)
	go func() {
		defer wg.Done()
		for wr := range wch {
			now := time.Now().UnixNano()
			for _, ev := range wr.Events {
				if ev.Type != clientv3.EventTypeDelete {
					continue
				}
				i, err := strconv.Atoi(string(ev.Kv.Key[len("reg/"):]))
				if err == nil && i >= 0 && i < in.N {
					deleted[i].CompareAndSwap(0, now)
					watched.Add(1)
				}
			}
		}
	}()

	// Registration: Grant, Put with the lease, KeepAlive; a consumer per
	// lease drains its channel (as the client documentation asks).
	t0 := time.Now()
	next := atomic.Int64{}
	var regErr atomic.Pointer[error]
	regCtx, regCancel := context.WithTimeout(lctx, in.RegisterTimeout)
	var rwg sync.WaitGroup
	for range max(in.Workers, 1) {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= in.N || regCtx.Err() != nil {
					return
				}
				g, err := cli.Grant(regCtx, int64(in.TTL))
				if err == nil {
					_, err = cli.Put(regCtx, "reg/"+strconv.Itoa(i), "10.0.0.1:8080", clientv3.WithLease(g.ID))
				}
				if err != nil {
					if regCtx.Err() == nil {
						regErr.CompareAndSwap(nil, &err)
					}
					return
				}
				kctx, kcancel := context.WithCancel(lctx)
				ch, err := cli.KeepAlive(kctx, g.ID)
				if err != nil {
					kcancel()
					regErr.CompareAndSwap(nil, &err)
					return
				}
				l := &lease{id: g.ID, cancel: kcancel}
				l.last.Store(time.Now().UnixNano())
				leases[i] = l
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range ch {
						l.last.Store(time.Now().UnixNano())
						renewals.Add(1)
					}
					// The channel closes when the lease is gone or the
					// keep-alive is cancelled.
					if !l.killed.Load() && lctx.Err() == nil {
						l.gone.Store(true)
						expired.Add(1)
					}
				}()
			}
		}()
	}
	tick := time.NewTicker(2 * time.Second)
	regDone := make(chan struct{})
	go func() { rwg.Wait(); close(regDone) }()
wait:
	for {
		select {
		case <-regDone:
			break wait
		case <-tick.C:
			done := min(int(next.Load()), in.N)
			c.Progress("registering: %d/%d in %.0fs, %d expired so far", done, in.N, time.Since(t0).Seconds(), expired.Load())
			// Leases expiring faster than they are registered will not
			// come back: stop instead of spending the whole time limit.
			if ex := expired.Load(); ex > max(1000, int64(done)/10) && regCtx.Err() == nil {
				e := fmt.Errorf("stopped registering: %d of %d leases already expired (keep-alives not keeping up)", ex, done)
				regErr.CompareAndSwap(nil, &e)
				regCancel()
			}
		}
	}
	tick.Stop()
	regCancel()
	registered := 0
	for _, l := range leases {
		if l != nil {
			registered++
		}
	}
	regSecs := time.Since(t0).Seconds()
	var errText string
	if e := regErr.Load(); e != nil {
		errText = (*e).Error()
	}
	if err := c.Send(map[string]any{"registered": registered, "secs": regSecs, "expired": expired.Load(), "error": errText}); err != nil {
		return nil, err
	}

	counters := func() Counters {
		return Counters{At: time.Now(), Registered: registered, Renewals: renewals.Load(), Expired: int(expired.Load()), Watched: watched.Load()}
	}
	for raw := range c.Commands() {
		var cmd LoadCmd
		if err := json.Unmarshal(raw, &cmd); err != nil {
			return nil, err
		}
		switch {
		case cmd.Mark:
			if err := c.Send(counters()); err != nil {
				return nil, err
			}
		case cmd.Kill:
			var idx []int
			for i := cmd.From; i < min(cmd.From+cmd.Count, in.N); i++ {
				if l := leases[i]; l != nil && !l.gone.Load() {
					idx = append(idx, i)
				}
			}
			killAt := time.Now()
			for _, i := range idx {
				leases[i].killed.Store(true)
				leases[i].cancel()
			}
			res := KillResult{Count: len(idx)}
			deadline := time.Now().Add(cmd.Wait)
			for time.Now().Before(deadline) {
				seen := 0
				for _, i := range idx {
					if deleted[i].Load() != 0 {
						seen++
					}
				}
				if seen == len(idx) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			var last int64
			for _, i := range idx {
				d := deleted[i].Load()
				if d == 0 {
					continue
				}
				res.Seen++
				res.FromLast = append(res.FromLast, float64(d-leases[i].last.Load())/1e9)
				last = max(last, d)
			}
			if last > 0 {
				res.AllVisible = float64(last-killAt.UnixNano()) / 1e9
			}
			if err := c.Send(res); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}
