package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/probe"
	pulsev1 "github.com/fb4b1dcc/pulse/proto/pulse/v1"
)

// Config configures a Node. Zero durations take the defaults.
type Config struct {
	// Endpoints are etcd client URLs (http://etcd1:2379, ...). Required.
	Endpoints []string
	// NodeID names this node in the cluster; unique, stable across
	// restarts (a restarted node takes its old share back). Required.
	NodeID string
	// Zone is the node's failure domain; Confirm asks nodes of other
	// zones.
	Zone string
	// Advertise is the gRPC host:port peers dial (default: the gRPC
	// address given to Attach, if it is not a wildcard).
	Advertise string
	// LeaseTTL is how long a silent node keeps its membership and its
	// claims (default 10s; etcd's floor is about 2s).
	LeaseTTL time.Duration
	// Settle is how long a membership change must hold before ownership
	// moves, so a burst of changes moves instances once (default 500ms).
	Settle time.Duration
	// Hold freezes ownership this long after this node's own session with
	// etcd recovers, so peers that lost their lease in the same outage
	// re-register before anything moves (default max(LeaseTTL, 5s): a
	// peer needs a reconnect, up to 2s of back-off, and one attempt).
	Hold time.Duration
	// PublishInterval batches state writes to etcd (default 250ms).
	PublishInterval time.Duration
	// ForwardInterval batches forwarded beats (default 20ms); ForwardQueue
	// bounds the beats waiting per peer (default 65536).
	ForwardInterval time.Duration
	ForwardQueue    int
	// Quorum is how many vantage points in other zones must see a probed
	// instance fail before its owner declares it down (default 1). Any
	// vantage that sees it answer keeps it suspect.
	Quorum int
	// ConfirmTimeout is added to the probe's own timeout for one
	// confirmation round (default 2s).
	ConfirmTimeout time.Duration
	// Token authenticates peers to each other (the "authorization:
	// Bearer" metadata of pulse.v1.Cluster). Empty: no authentication
	// (loopback or a trusted network only).
	Token []byte
	// PeerTLS dials peers over TLS (nil: plaintext). EtcdTLS, EtcdUsername
	// and EtcdPassword reach a secured etcd.
	PeerTLS                    *tls.Config
	EtcdTLS                    *tls.Config
	EtcdUsername, EtcdPassword string
	// DialTimeout bounds connecting to etcd (default 5s).
	DialTimeout time.Duration
	// Logger receives the node's lines (default: discard).
	Logger *slog.Logger
	// NewProber builds the probers Confirm answers with (default
	// probe.New); the daemon passes the monitor's.
	NewProber func(probe.Module) (probe.Prober, error)
}

var nodeIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks c and fills its defaults.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Endpoints) == 0 {
		errs = append(errs, errors.New("cluster: no etcd endpoints (give --cluster-endpoints=http://etcd:2379,... or cluster.endpoints)"))
	}
	for _, e := range c.Endpoints {
		if err := CheckEndpoint(e); err != nil {
			errs = append(errs, err)
		}
	}
	if !nodeIDRE.MatchString(c.NodeID) {
		errs = append(errs, fmt.Errorf("cluster: node id %q: want 1-128 letters, digits, '.', '_' or '-' (give --node-id or cluster.node_id)", c.NodeID))
	}
	if c.Zone != "" && !nodeIDRE.MatchString(c.Zone) {
		errs = append(errs, fmt.Errorf("cluster: zone %q: want 1-128 letters, digits, '.', '_' or '-'", c.Zone))
	}
	if c.Advertise != "" {
		if err := checkAdvertise(c.Advertise); err != nil {
			errs = append(errs, err)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.LeaseTTL, 10*time.Second)
	def(&c.Settle, 500*time.Millisecond)
	def(&c.Hold, max(c.LeaseTTL, 5*time.Second))
	def(&c.PublishInterval, 250*time.Millisecond)
	def(&c.ForwardInterval, 20*time.Millisecond)
	def(&c.ConfirmTimeout, 2*time.Second)
	def(&c.DialTimeout, 5*time.Second)
	if c.ForwardQueue == 0 {
		c.ForwardQueue = 1 << 16
	}
	if c.Quorum == 0 {
		c.Quorum = 1
	}
	switch {
	case c.LeaseTTL < 2*time.Second || c.LeaseTTL > 5*time.Minute:
		errs = append(errs, fmt.Errorf("cluster: lease TTL %s is outside 2s..5m", c.LeaseTTL))
	case c.Settle < 0 || c.Hold < 0 || c.PublishInterval < 0 || c.ForwardInterval < 0 || c.ConfirmTimeout < 0 || c.DialTimeout < 0:
		errs = append(errs, errors.New("cluster: negative duration"))
	case c.Quorum < 0 || c.ForwardQueue < 0:
		errs = append(errs, errors.New("cluster: negative quorum or queue"))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.NewProber == nil {
		c.NewProber = func(m probe.Module) (probe.Prober, error) { return probe.New(m) }
	}
	return errors.Join(errs...)
}

// CheckEndpoint reports whether e is an etcd client URL.
func CheckEndpoint(e string) error {
	u, err := url.Parse(e)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("cluster: etcd endpoint %q: want http://host:port or https://host:port", e)
	}
	return nil
}

func checkAdvertise(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || port == "" || port == "0" {
		return fmt.Errorf("cluster: advertise address %q: want host:port with a fixed port", a)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("cluster: advertise address %q is a wildcard; peers need an address they can dial (set cluster.advertise)", a)
	}
	return nil
}

// ErrCrash, given as the cause when cancelling Run's context
// (context.WithCancelCause), stops the node as a crash would: its lease is
// not revoked, so the cluster notices only when the lease expires. The
// demo and the failover tests use it; a normal stop revokes the lease and
// hands the node's instances over at once.
var ErrCrash = errors.New("cluster: simulated crash")

// Node is one member of a pulse cluster. Create it with New (which starts
// nothing), pass Hooks to monitor.New, then Attach the monitor, Register
// the gRPC service, and Run.
type Node struct {
	cfg Config
	log *slog.Logger

	self  Member
	mon   *monitor.Monitor
	apply func(*config.Config) error

	ring     atomic.Pointer[Ring]
	cli      atomic.Pointer[clientv3.Client]
	lease    atomic.Int64 // clientv3.LeaseID; 0 before the first grant
	healthy  atomic.Bool  // the session with etcd answers
	etcdConf atomic.Bool  // a configuration from etcd is in force
	synced   chan struct{}
	syncOnce sync.Once
	// sessionCh says the session's health or lease changed (buffer 1).
	sessionCh chan struct{}

	pub     *publisher
	fwd     *forwarder
	peers   *peerSet
	probers *proberCache
	cfgSync *configSync

	running atomic.Bool
	serving atomic.Bool // between Run's start and end: the RPCs answer
	h       health
	limiter rateLog
	stats   counters
}

// New validates cfg and returns a Node. It starts nothing.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID), synced: make(chan struct{}),
		sessionCh: make(chan struct{}, 1)}
	n.self = Member{ID: cfg.NodeID, Zone: cfg.Zone, GRPC: cfg.Advertise}
	n.ring.Store(NewRing([]Member{n.self}))
	n.pub = newPublisher(n)
	n.fwd = newForwarder(n)
	n.peers = newPeerSet(n)
	n.probers = newProberCache(cfg.NewProber)
	n.cfgSync = &configSync{n: n}
	return n, nil
}

// Hooks are what monitor.Options.Cluster needs. Until Run has joined the
// cluster the node owns every instance (the single-node behaviour), so a
// node that cannot reach etcd at start still judges.
func (n *Node) Hooks() *monitor.ClusterHooks {
	return &monitor.ClusterHooks{Owns: n.Owns, Forward: n.fwd.forward, Confirm: n.confirm}
}

// Attach gives the node its monitor, the addresses it announces, the
// configuration in force, and the function that applies a configuration
// (the daemon's reload path: etcd's configurations take it too). Call it
// once, before Run.
func (n *Node) Attach(m *monitor.Monitor, grpcAddr, httpAddr, udpAddr string, current *config.Config, apply func(*config.Config) error) error {
	if m == nil || apply == nil || current == nil {
		return errors.New("cluster: Attach needs a monitor, the current configuration and an apply function")
	}
	if n.running.Load() {
		return errors.New("cluster: Attach after Run")
	}
	if n.cfg.Advertise == "" {
		if err := checkAdvertise(grpcAddr); err != nil {
			return fmt.Errorf("%w (the gRPC listener is %s)", err, grpcAddr)
		}
		n.self.GRPC = grpcAddr
	}
	n.self.HTTP, n.self.UDP = httpAddr, udpAddr
	n.self.Started = time.Now().UTC().Format(time.RFC3339)
	n.mon, n.apply = m, apply
	n.ring.Store(NewRing([]Member{n.self}))
	n.cfgSync.initial(current)
	return nil
}

// Register adds the pulse.v1.Cluster service to a gRPC server.
func (n *Node) Register(s grpc.ServiceRegistrar) {
	pulsev1.RegisterClusterServer(s, &service{n: n})
}

// Owns reports whether this node judges the instance. It is the
// monitor's Owns hook: lock-free, allocation-free.
func (n *Node) Owns(service, instance string) bool {
	r := n.ring.Load()
	i := r.ownerIndex(keyHash(service, instance))
	return i < 0 || r.members[i].ID == n.cfg.NodeID
}

// Owner returns the ID of the node that owns the instance in this node's
// view.
func (n *Node) Owner(service, instance string) string { return n.ring.Load().Owner(service, instance) }

// Ring returns the membership view ownership follows now.
func (n *Node) Ring() *Ring { return n.ring.Load() }

// ID returns the node's ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// Self returns what the node announces.
func (n *Node) Self() Member { return n.self }

// Synced is closed once the node has joined: it read the membership, the
// published state and the configuration, and announced itself.
func (n *Node) Synced() <-chan struct{} { return n.synced }

// Healthy reports whether the session with etcd answers. While it does
// not, ownership stays frozen at the last view.
func (n *Node) Healthy() bool { return n.healthy.Load() }

// ConfigFromEtcd reports whether the configuration in force came from
// etcd: then local file changes are not applied (the daemon logs them).
func (n *Node) ConfigFromEtcd() bool { return n.etcdConf.Load() }

func (n *Node) notifySession() {
	select {
	case n.sessionCh <- struct{}{}:
	default:
	}
}

// Run joins the cluster and keeps the node's part of it until ctx ends:
// the lease, the membership and state watch, the publisher, the
// forwarder. It returns after every goroutine it started has exited. A
// normal stop revokes the lease (the node's instances move at once); a
// stop with cause ErrCrash does not.
func (n *Node) Run(ctx context.Context) error {
	if n.mon == nil {
		return errors.New("cluster: Run before Attach")
	}
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("cluster: Run called twice")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: n.cfg.Endpoints, DialTimeout: n.cfg.DialTimeout, TLS: n.cfg.EtcdTLS,
		Username: n.cfg.EtcdUsername, Password: n.cfg.EtcdPassword,
		// Notice a half-open connection within a few seconds, and come
		// back quickly when etcd does: grpc's default reconnect back-off
		// grows to two minutes.
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second, PermitWithoutStream: true,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second})},
		Logger: zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("cluster: etcd client: %w", err)
	}
	n.cli.Store(cli)
	defer cli.Close()
	n.serving.Store(true)
	defer n.serving.Store(false)

	inner, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	goRun := func(name string, f func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					n.log.Error("cluster goroutine panicked; the node stops its cluster part", "part", name, "panic", fmt.Sprint(r))
					n.stats.panics.Add(1)
					cancel()
				}
			}()
			f(inner)
		}()
	}
	goRun("forwarder", n.fwd.run)
	goRun("sync", n.syncLoop)
	goRun("session", n.sessionLoop)
	goRun("publisher", n.pub.run)
	<-inner.Done()
	wg.Wait()
	n.peers.closeAll()
	n.probers.closeAll()
	if !errors.Is(context.Cause(ctx), ErrCrash) {
		n.leave()
	}
	return nil
}

// leave revokes the lease: the node's membership and claims vanish now,
// and its peers take its instances over without waiting for the TTL.
func (n *Node) leave() {
	id := clientv3.LeaseID(n.lease.Load())
	cli := n.cli.Load()
	if id == 0 || cli == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := cli.Revoke(ctx, id); err != nil {
		n.log.Warn("could not revoke the cluster lease on stop; peers take over when it expires", "err", err, "ttl", n.cfg.LeaseTTL)
		return
	}
	n.log.Info("left the cluster")
}

// etcdCtx bounds one etcd request.
func (n *Node) etcdCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, max(n.cfg.DialTimeout, 2*time.Second))
}
