package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/fb4b1dcc/pulse/api"
	"github.com/fb4b1dcc/pulse/cluster"
	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/health"
	"github.com/fb4b1dcc/pulse/health/healthgrpc"
	"github.com/fb4b1dcc/pulse/health/healthmetrics"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/store"
	"github.com/fb4b1dcc/pulse/store/memory"
	"github.com/fb4b1dcc/pulse/store/sqlite"
	"github.com/fb4b1dcc/pulse/telemetry"
	"github.com/fb4b1dcc/pulse/telemetry/metrics"
	"github.com/fb4b1dcc/pulse/web"
	"github.com/fb4b1dcc/pulse/wire"
)

// Options configures a Daemon. Addresses and the data directory override
// the configuration's.
type Options struct {
	Config     *config.Config // nil: built-in defaults
	ConfigPath string         // watched for changes when set
	HTTPAddr   string
	GRPCAddr   string
	UDPAddr    string
	DataDir    string
	// InMemory keeps history in memory only (no pulse.db).
	InMemory bool
	// DrainDelay is how long /readyz says 503 before listeners close
	// (default 0 in-process; `pulse serve` sets 5s).
	DrainDelay time.Duration
	Logger     *slog.Logger
	// Out receives the start-up lines meant for a person (addresses,
	// warnings); default io.Discard.
	Out io.Writer
	// TracerProvider for the monitor, probes and ingest (default global).
	TracerProvider trace.TracerProvider
	// HandleSIGHUP reloads the configuration on SIGHUP (serve sets it).
	HandleSIGHUP bool
	// Extra mounts additional handlers on the HTTP server (the demo's
	// pages); keys are patterns.
	Extra map[string]http.Handler
	// Cluster runs the daemon as a node of a cluster (cluster.go); nil
	// uses the configuration's cluster section, if any.
	Cluster *ClusterOptions
}

// Daemon is a running pulse monitor.
type Daemon struct {
	opts   Options
	cfg    *config.Config
	log    *slog.Logger
	mon    *monitor.Monitor
	st     store.Store
	recv   *ingest.Receiver
	health *health.Health
	api    *api.API
	reg    *prometheus.Registry
	watch  *config.Watcher
	// cluster is nil outside cluster mode (cluster.go).
	cluster *cluster.Node

	metrics       *metrics.Metrics
	traceShutdown func(context.Context) error

	httpLn, grpcLn net.Listener
	udpConn        *net.UDPConn
	httpSrv        *http.Server
	grpcSrv        *grpc.Server

	ready chan struct{}
	mu    sync.Mutex
}

// New builds every part and binds every listener, so that a bad address
// or an unreadable data directory fails here, with a message, before
// anything runs. It starts no goroutine.
func New(opts Options) (_ *Daemon, err error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := opts.Config
	if cfg == nil {
		if cfg, err = config.Default(); err != nil {
			return nil, err
		}
	}
	d := &Daemon{opts: opts, cfg: cfg, log: opts.Logger, ready: make(chan struct{})}
	defer func() {
		if err != nil {
			d.closeAll()
		}
	}()
	httpAddr := pick(opts.HTTPAddr, cfg.Listen.HTTP)
	grpcAddr := pick(opts.GRPCAddr, cfg.Listen.GRPC)
	udpAddr := pick(opts.UDPAddr, cfg.Listen.UDP)
	dataDir := pick(opts.DataDir, cfg.DataDir)

	if opts.InMemory {
		d.st = memory.New()
	} else {
		if err := os.MkdirAll(dataDir, 0o750); err != nil {
			return nil, fmt.Errorf("data directory %s: %w (choose another with --data)", dataDir, err)
		}
		path := filepath.Join(dataDir, "pulse.db")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		db, err := sqlite.Open(ctx, path, sqlite.Options{})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", path, err)
		}
		d.st = db
	}

	tp := opts.TracerProvider
	if tp == nil {
		t := cfg.Telemetry
		to := telemetry.TraceOptions{Stdout: t.Stdout, SampleRatio: t.SampleRatio.Or(1)}
		if t.OTLP != nil {
			to.OTLPEndpoint, to.OTLPProtocol, to.OTLPInsecure, to.OTLPHeaders = t.OTLP.Endpoint, t.OTLP.Protocol, t.OTLP.Insecure, t.OTLP.Headers
		}
		var shutdown func(context.Context) error
		if tp, shutdown, err = telemetry.SetupTracing(context.Background(), to); err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
		d.traceShutdown = shutdown
		opts.TracerProvider = tp
	}
	d.metrics = metrics.New()
	clusterHooks, err := d.newCluster(cfg, tp)
	if err != nil {
		return nil, err
	}
	d.mon, err = monitor.New(monitor.Options{Store: d.st, Logger: d.log, TracerProvider: tp, Hooks: d.metrics, Cluster: clusterHooks})
	if err != nil {
		return nil, err
	}
	if err := d.mon.Apply(&cfg.Spec); err != nil {
		return nil, fmt.Errorf("applying the configuration: %w", err)
	}
	keys, tokens, err := credentials4(&cfg.Spec)
	if err != nil {
		return nil, err
	}

	if d.udpConn, err = listenUDP(udpAddr); err != nil {
		return nil, err
	}
	ingestOpts := []ingest.Option{ingest.WithTracerProvider(tp)}
	// The instance table bounds memory against floods of authenticated
	// but bogus instance names; sized for a million-instance fleet.
	d.recv, err = ingest.New(ingest.Config{UDPConn: d.udpConn, Keys: keys, Tokens: tokens, Sink: d.mon,
		Directives: d.mon.Directives, MaxInstances: 2_000_000}, ingestOpts...)
	if err != nil {
		return nil, err
	}

	d.health, err = health.New(health.Options{DrainDelay: opts.DrainDelay},
		health.Check{Name: "store", Interval: 5 * time.Second, Timeout: 2 * time.Second, Func: func(ctx context.Context) error {
			_, err := d.st.LastSeq(ctx)
			return err
		}},
		health.Check{Name: "ingest", Interval: time.Second, Timeout: time.Second, Func: func(ctx context.Context) error {
			select {
			case <-d.recv.Ready():
				return nil
			default:
				return errors.New("UDP receiver not running yet")
			}
		}},
	)
	if err != nil {
		return nil, err
	}

	d.api = api.New(d.mon, api.Options{Store: d.st, Tokens: cfg.APITokens, Beat: d.recv.Handler(), Logger: d.log})
	d.reg = prometheus.NewRegistry()
	d.metrics.WatchMonitor(d.mon, 10000)
	d.metrics.WatchIngest(d.recv)
	d.metrics.Func(d.collectSelf)
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), d.metrics,
		healthmetrics.New(d.health, "pulse_monitor"))

	mux := http.NewServeMux()
	d.health.Register(mux)
	mux.Handle("/api/", d.api.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.Handle("/", web.Handler(web.Options{TraceURL: cfg.TraceURL}))
	for pattern, h := range opts.Extra {
		mux.Handle(pattern, h)
	}
	d.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}
	grpcOpts := []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	if cfg.TLS != nil {
		tc, err := serverTLS(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile)
		if err != nil {
			return nil, err
		}
		d.httpSrv.TLSConfig = tc
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(tc)))
	}
	d.grpcSrv = grpc.NewServer(grpcOpts...)
	healthgrpc.Register(d.grpcSrv, d.health)
	api.RegisterGRPC(d.grpcSrv, d.mon, d.recv, d.api)

	if d.httpLn, err = net.Listen("tcp", httpAddr); err != nil {
		return nil, fmt.Errorf("HTTP listener on %s: %w (pick another with --http-addr)", httpAddr, err)
	}
	if d.grpcLn, err = net.Listen("tcp", grpcAddr); err != nil {
		return nil, fmt.Errorf("gRPC listener on %s: %w (pick another with --grpc-addr)", grpcAddr, err)
	}
	if err := d.attachCluster(); err != nil {
		return nil, err
	}
	if opts.ConfigPath != "" {
		d.watch = config.NewWatcher(opts.ConfigPath, cfg, d.reloadConfig, d.log)
	}
	return d, nil
}

func pick(override, cfg string) string {
	if override != "" {
		return override
	}
	return cfg
}

func listenUDP(addr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("UDP address %s: %w (pick another with --udp-addr)", addr, err)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("UDP listener on %s: %w (pick another with --udp-addr)", addr, err)
	}
	return c, nil
}

// credentials4 turns the spec's per-service keys and tokens into ingest's
// keyring and token map.
func credentials4(spec *monitor.Spec) (*wire.Keyring, map[string][]string, error) {
	keys := map[string][]*wire.Key{}
	tokens := map[string][]string{}
	for _, s := range spec.Services {
		if !s.Passive.Enabled {
			continue
		}
		for id, secret := range s.Passive.Keys {
			k, err := wire.NewKey(id, secret)
			if err != nil {
				return nil, nil, fmt.Errorf("service %s key %d: %w", s.Name, id, err)
			}
			keys[s.Name] = append(keys[s.Name], k)
		}
		for _, t := range s.Passive.Tokens {
			tokens[s.Name] = append(tokens[s.Name], string(t))
		}
	}
	ring, err := wire.NewKeyring(keys)
	if err != nil {
		return nil, nil, err
	}
	return ring, tokens, nil
}

// applyConfig is the reload path: validate everything first, then swap.
// Settings that only take effect at start (listeners, logging, TLS,
// telemetry, the data directory) are reported when they change, so the
// operator knows a restart is needed for them.
func (d *Daemon) applyConfig(c *config.Config) error {
	d.mu.Lock()
	old := d.cfg
	d.mu.Unlock()
	var restart []string
	if old.Listen != c.Listen {
		restart = append(restart, "listen")
	}
	if old.Log != c.Log {
		restart = append(restart, "log")
	}
	if !reflect.DeepEqual(old.TLS, c.TLS) {
		restart = append(restart, "tls")
	}
	if !reflect.DeepEqual(old.Telemetry, c.Telemetry) {
		restart = append(restart, "telemetry")
	}
	if old.DataDir != c.DataDir {
		restart = append(restart, "data_dir")
	}
	if old.TraceURL != c.TraceURL {
		restart = append(restart, "api.trace_url")
	}
	if len(restart) > 0 {
		d.log.Warn("configuration fields changed that take effect only after a restart; the rest is applied now",
			"fields", restart, "file", c.Source)
	}
	keys, tokens, err := credentials4(&c.Spec)
	if err != nil {
		return err
	}
	if err := d.mon.Apply(&c.Spec); err != nil {
		return err
	}
	d.recv.SetKeys(keys)
	if err := d.recv.SetTokens(tokens); err != nil {
		return err
	}
	d.api.SetTokens(c.APITokens)
	d.mu.Lock()
	d.cfg = c
	d.mu.Unlock()
	return nil
}

// HTTPAddr, GRPCAddr and UDPAddr are the bound addresses.
func (d *Daemon) HTTPAddr() string { return d.httpLn.Addr().String() }
func (d *Daemon) GRPCAddr() string { return d.grpcLn.Addr().String() }
func (d *Daemon) UDPAddr() string  { return d.udpConn.LocalAddr().String() }

// Monitor returns the monitor (the demo drives it; tests inspect it).
func (d *Daemon) Monitor() *monitor.Monitor { return d.mon }

// Health returns the daemon's own health state.
func (d *Daemon) Health() *health.Health { return d.health }

// Registry returns the metrics registry served on /metrics.
func (d *Daemon) Registry() *prometheus.Registry { return d.reg }

// Store returns the history store.
func (d *Daemon) Store() store.Store { return d.st }

// Reload re-reads the configuration file (as SIGHUP does).
func (d *Daemon) Reload() {
	if d.watch != nil {
		d.watch.Reload()
	}
}

// Ready is closed when every listener serves.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Run serves until ctx ends, then drains and stops everything. It returns
// after every goroutine it started has exited and the store is closed.
func (d *Daemon) Run(ctx context.Context) error {
	d.announce()
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	goRun := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	monCtx, stopMon := context.WithCancel(runCtx)
	defer stopMon()
	recvCtx, stopRecv := context.WithCancel(runCtx)
	defer stopRecv()
	stopCluster := d.startCluster(ctx, goRun)
	goRun("monitor", func() error { return d.mon.Run(monCtx) })
	goRun("ingest", func() error { return d.recv.Run(recvCtx) })
	goRun("health", func() error { return d.health.Run(runCtx) })
	goRun("http", func() error {
		if d.httpSrv.TLSConfig != nil {
			return d.httpSrv.ServeTLS(d.httpLn, "", "")
		}
		return d.httpSrv.Serve(d.httpLn)
	})
	goRun("grpc", func() error { return d.grpcSrv.Serve(d.grpcLn) })
	if d.watch != nil {
		goRun("config watch", func() error { return d.watch.Run(runCtx) })
	}
	if d.opts.HandleSIGHUP && d.watch != nil {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-runCtx.Done():
					return
				case <-hup:
					d.log.Info("SIGHUP: reloading the configuration")
					d.watch.Reload()
				}
			}
		}()
	}
	close(d.ready)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		d.log.Error("a part of the monitor failed; shutting down", "err", runErr)
	}

	// Drain: readiness first, so load balancers stop sending, then close.
	d.log.Info("shutting down: /readyz now answers 503")
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), d.opts.DrainDelay+30*time.Second)
	defer cancelDrain()
	healthDone := make(chan error, 1)
	go func() { healthDone <- d.health.Shutdown(drainCtx) }()
	if d.opts.DrainDelay > 0 {
		select {
		case <-time.After(d.opts.DrainDelay):
		case <-drainCtx.Done():
		}
	}
	stopCtx, cancelStop := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelStop()
	// Watch streams (SSE, gRPC Watch, open dashboards) end first: they
	// would otherwise hold the servers' graceful shutdown open.
	d.mon.CloseWatchers()
	d.httpSrv.Shutdown(stopCtx)
	// Beat streams (gRPC senders) never end by themselves: give unary
	// calls a moment, then close what is left; senders reconnect.
	grpcStopped := make(chan struct{})
	go func() { d.grpcSrv.GracefulStop(); close(grpcStopped) }()
	select {
	case <-grpcStopped:
	case <-time.After(time.Second):
		d.grpcSrv.Stop()
		<-grpcStopped
	}
	stopRecv()
	stopMon() // flushes events and snapshots to the store
	stopCluster(context.Cause(ctx))
	cancelRun()
	<-healthDone
	wg.Wait()
	if err := d.st.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("closing the store: %w", err)
	}
	if d.traceShutdown != nil {
		tctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		d.traceShutdown(tctx)
		cancel()
	}
	d.log.Info("stopped")
	return runErr
}

// announce prints where everything is, and warns about exposure.
func (d *Daemon) announce() {
	out := d.opts.Out
	scheme := "http"
	if d.httpSrv.TLSConfig != nil {
		scheme = "https"
	}
	fmt.Fprintf(out, "pulse monitor: API and dashboard %s://%s/  gRPC %s  UDP beats %s\n", scheme, d.HTTPAddr(), d.GRPCAddr(), d.UDPAddr())
	exposed := !isLoopback(d.HTTPAddr()) || !isLoopback(d.GRPCAddr()) || !isLoopback(d.UDPAddr())
	switch {
	case !exposed:
		fmt.Fprintln(out, "listening on loopback only (set listen: in pulse.yaml or --http-addr/--grpc-addr/--udp-addr to serve others)")
	case !d.api.AuthRequired():
		msg := "WARNING: listening beyond loopback with no api.tokens: anyone who can reach the API can read the fleet and deregister instances"
		fmt.Fprintln(out, msg)
		d.log.Warn(msg)
	}
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback() || host == "localhost"
}

// closeAll releases what New acquired when New fails.
func (d *Daemon) closeAll() {
	if d.httpLn != nil {
		d.httpLn.Close()
	}
	if d.grpcLn != nil {
		d.grpcLn.Close()
	}
	if d.udpConn != nil {
		d.udpConn.Close()
	}
	if d.st != nil {
		d.st.Close()
	}
}

// collectSelf exports the daemon's own counters: configuration reloads and
// the hash of the configuration in force.
func (d *Daemon) collectSelf(ch chan<- prometheus.Metric) {
	reloads := prometheus.NewDesc("pulse_config_reloads_total", "Configuration reloads by result (a failed reload keeps the running configuration).", []string{"result"}, nil)
	info := prometheus.NewDesc("pulse_config_info", "The configuration in force, by the first 12 hex digits of its SHA-256.", []string{"hash"}, nil)
	var ok, failed uint64
	if d.watch != nil {
		st := d.watch.Stats()
		ok, failed = st.Successes, st.Failures
	}
	ch <- prometheus.MustNewConstMetric(reloads, prometheus.CounterValue, float64(ok), "success")
	ch <- prometheus.MustNewConstMetric(reloads, prometheus.CounterValue, float64(failed), "failure")
	d.mu.Lock()
	hash := d.cfg.Hash
	d.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(info, prometheus.GaugeValue, 1, hash)
}
