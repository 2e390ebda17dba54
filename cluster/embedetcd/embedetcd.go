package embedetcd

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Options configures an embedded etcd.
type Options struct {
	// Dir is the data directory (required; the caller removes it).
	Dir string
	// ClientAddr and PeerAddr are host:port to listen on (default
	// 127.0.0.1 with a free port each). Give ClientAddr to restart a
	// server on the same address.
	ClientAddr, PeerAddr string
	// StartTimeout bounds waiting for the server to serve (default 30s).
	StartTimeout time.Duration
}

// Server is a running single-member etcd.
type Server struct {
	e      *embed.Etcd
	client string
	closed bool
}

// Start runs an etcd member and waits until it serves clients. Its logs go
// nowhere: etcd's own log volume would drown the demo's and the tests'.
// Addresses it picks itself are retried if another process takes the
// port between the pick and the bind.
func Start(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("embedetcd: Dir is required")
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	picked := opts.ClientAddr == "" || opts.PeerAddr == ""
	for attempt := 0; ; attempt++ {
		s, err := start(opts)
		if err == nil || !picked || attempt == 4 || !errors.Is(err, syscall.EADDRINUSE) {
			return s, err
		}
	}
}

func start(opts Options) (*Server, error) {
	var err error
	if opts.ClientAddr == "" {
		if opts.ClientAddr, err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	if opts.PeerAddr == "" {
		if opts.PeerAddr, err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	cu, err := url.Parse("http://" + opts.ClientAddr)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: client address %q: %w", opts.ClientAddr, err)
	}
	pu, err := url.Parse("http://" + opts.PeerAddr)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: peer address %q: %w", opts.PeerAddr, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = "pulse"
	cfg.Dir = opts.Dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// A test or demo member on a shared machine: no fsync per write.
	cfg.UnsafeNoFsync = true
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: start: %w", err)
	}
	t := time.NewTimer(opts.StartTimeout)
	defer t.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedetcd: start: %w", err)
	case <-t.C:
		e.Close()
		return nil, fmt.Errorf("embedetcd: not ready after %s", opts.StartTimeout)
	}
	return &Server{e: e, client: opts.ClientAddr}, nil
}

// Endpoint is the client URL ("http://127.0.0.1:port").
func (s *Server) Endpoint() string { return "http://" + s.client }

// ClientAddr is the client host:port.
func (s *Server) ClientAddr() string { return s.client }

// Close stops the member and waits for its goroutines. It is idempotent.
func (s *Server) Close() {
	if s.closed {
		return
	}
	s.closed = true
	s.e.Close()
}

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("embedetcd: finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
