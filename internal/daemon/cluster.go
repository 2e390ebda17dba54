package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/fb4b1dcc/pulse/cluster"
	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/probe"
)

// ClusterOptions run the daemon as one node of a cluster (docs/cluster.md).
// Set fields override the configuration's cluster section.
type ClusterOptions struct {
	Endpoints []string
	NodeID    string
	Zone      string
	Advertise string
	LeaseTTL  time.Duration
	// Tune adjusts the node's configuration last (the demo and tests
	// shorten the settle, hold and publish intervals).
	Tune func(*cluster.Config)
	// StartWait bounds how long Run waits for the node to join before
	// judging starts anyway (default 10s): a node that cannot reach etcd
	// at start judges every instance alone until it can.
	StartWait time.Duration
}

// clusterConfig merges the flags over the file's section; ok is false
// outside cluster mode.
func clusterConfig(o *ClusterOptions, c *config.Config, tp trace.TracerProvider) (cluster.Config, bool, error) {
	var cc cluster.Config
	fc := c.Cluster
	if fc == nil {
		fc = &config.ClusterConfig{}
	}
	if o == nil {
		o = &ClusterOptions{}
	}
	cc.Endpoints = fc.Endpoints
	if len(o.Endpoints) > 0 {
		cc.Endpoints = o.Endpoints
	}
	if len(cc.Endpoints) == 0 {
		return cc, false, nil
	}
	cc.NodeID, cc.Zone, cc.Advertise, cc.LeaseTTL = pick(o.NodeID, fc.NodeID), pick(o.Zone, fc.Zone), pick(o.Advertise, fc.Advertise), fc.LeaseTTL
	if o.LeaseTTL > 0 {
		cc.LeaseTTL = o.LeaseTTL
	}
	cc.Quorum, cc.Token = fc.ConfirmQuorum, fc.Token
	cc.EtcdUsername, cc.EtcdPassword = fc.EtcdUsername, string(fc.EtcdPassword)
	if fc.EtcdCAFile != "" || fc.EtcdCertFile != "" {
		t, err := clientTLS(fc.EtcdCAFile, fc.EtcdCertFile, fc.EtcdKeyFile)
		if err != nil {
			return cc, false, fmt.Errorf("cluster.etcd: %w", err)
		}
		cc.EtcdTLS = t
	}
	if c.TLS != nil {
		// Peers serve TLS on their gRPC listener as this node does; with
		// client certificates required, this node presents its own.
		cert := ""
		if c.TLS.ClientCAFile != "" {
			cert = c.TLS.CertFile
		}
		t, err := clientTLS(fc.PeerCAFile, cert, c.TLS.KeyFile)
		if err != nil {
			return cc, false, fmt.Errorf("cluster peers: %w", err)
		}
		cc.PeerTLS = t
	}
	cc.NewProber = func(m probe.Module) (probe.Prober, error) { return probe.New(m, probe.WithTracerProvider(tp)) }
	if o.Tune != nil {
		o.Tune(&cc)
	}
	return cc, true, nil
}

func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
		t.RootCAs = pool
	}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		t.Certificates = []tls.Certificate{c}
	}
	return t, nil
}

// newCluster builds the cluster node (cluster mode only) and returns the
// hooks the monitor needs.
func (d *Daemon) newCluster(c *config.Config, tp trace.TracerProvider) (*monitor.ClusterHooks, error) {
	cc, on, err := clusterConfig(d.opts.Cluster, c, tp)
	if err != nil || !on {
		return nil, err
	}
	cc.Logger = d.log
	if d.cluster, err = cluster.New(cc); err != nil {
		return nil, err
	}
	return d.cluster.Hooks(), nil
}

// attachCluster gives the node the monitor, the bound addresses and the
// reload path, and serves pulse.v1.Cluster on the gRPC listener.
func (d *Daemon) attachCluster() error {
	if d.cluster == nil {
		return nil
	}
	if err := d.cluster.Attach(d.mon, d.GRPCAddr(), d.HTTPAddr(), d.UDPAddr(), d.cfg, d.applyConfig); err != nil {
		return fmt.Errorf("%w (set cluster.advertise, or --grpc-addr to an address peers can dial)", err)
	}
	d.cluster.Register(d.grpcSrv)
	d.reg.MustRegister(clusterCollector{d.cluster})
	return nil
}

// reloadConfig is the file watcher's path: in cluster mode a configuration
// pushed to etcd takes precedence over the local file.
func (d *Daemon) reloadConfig(c *config.Config) error {
	if d.cluster != nil {
		return d.cluster.ApplyLocal(c)
	}
	return d.applyConfig(c)
}

// Cluster returns the cluster node (nil outside cluster mode).
func (d *Daemon) Cluster() *cluster.Node { return d.cluster }

// startCluster runs the node and waits (bounded) for it to join, so the
// monitor starts judging with its share known and the fleet's published
// state mirrored. The node stops when stop is called, after the servers
// and the monitor; a cause of cluster.ErrCrash skips the lease revoke.
func (d *Daemon) startCluster(runCtx context.Context, goRun func(string, func() error)) (stop func(cause error)) {
	if d.cluster == nil {
		return func(error) {}
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	goRun("cluster", func() error { return d.cluster.Run(ctx) })
	wait := 10 * time.Second
	if d.opts.Cluster != nil && d.opts.Cluster.StartWait > 0 {
		wait = d.opts.Cluster.StartWait
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-d.cluster.Synced():
	case <-runCtx.Done():
	case <-t.C:
		d.log.Warn("the cluster node has not joined yet (is etcd reachable?); judging every instance alone until it does", "waited", wait)
	}
	return func(cause error) {
		if cause == nil {
			cause = context.Canceled
		}
		cancel(cause)
	}
}

// clusterCollector exports the node's counters.
type clusterCollector struct{ n *cluster.Node }

var (
	clMembers  = prometheus.NewDesc("pulse_cluster_members", "Members in this node's view of the cluster (ownership follows it).", nil, nil)
	clHealthy  = prometheus.NewDesc("pulse_cluster_etcd_healthy", "1 while etcd answers this node's keep-alives; 0: ownership is frozen.", nil, nil)
	clViews    = prometheus.NewDesc("pulse_cluster_view_changes_total", "Membership views applied (each moves instances).", nil, nil)
	clForward  = prometheus.NewDesc("pulse_cluster_forwarded_beats_total", "Beats forwarded to their owners, by result.", []string{"result"}, nil)
	clReceived = prometheus.NewDesc("pulse_cluster_received_beats_total", "Beats peers forwarded to this node, by result.", []string{"result"}, nil)
	clPublish  = prometheus.NewDesc("pulse_cluster_published_states_total", "Instance states written to etcd.", nil, nil)
	clPubTxn   = prometheus.NewDesc("pulse_cluster_publish_txns_total", "etcd transactions that wrote instance states, by result.", []string{"result"}, nil)
	clMirror   = prometheus.NewDesc("pulse_cluster_mirrored_states_total", "Peer-owned instance states applied here.", nil, nil)
	clConfirm  = prometheus.NewDesc("pulse_cluster_confirmations_total", "Down verdicts put to other vantage points, by outcome.", []string{"outcome"}, nil)
	clServed   = prometheus.NewDesc("pulse_cluster_confirm_probes_total", "Probes run for peers' confirmations.", nil, nil)
	clConfig   = prometheus.NewDesc("pulse_cluster_configs_total", "Configurations read from etcd, by result.", []string{"result"}, nil)
)

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{clMembers, clHealthy, clViews, clForward, clReceived, clPublish, clPubTxn, clMirror, clConfirm, clServed, clConfig} {
		ch <- d
	}
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.Stats()
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	n := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	healthy := 0.0
	if s.Healthy {
		healthy = 1
	}
	g(clMembers, float64(len(s.Members)))
	g(clHealthy, healthy)
	n(clViews, s.ViewChanges)
	n(clForward, s.Forwarded, "accepted")
	n(clForward, s.ForwardDropped, "dropped")
	n(clForward, s.ForwardMisrouted, "misrouted")
	n(clReceived, s.ForwardReceived, "accepted")
	n(clReceived, s.Misrouted, "misrouted")
	n(clPublish, s.Published)
	n(clPubTxn, s.PublishTxns, "ok")
	n(clPubTxn, s.PublishErrors, "error")
	n(clMirror, s.Mirrored)
	n(clConfirm, s.ConfirmAgreed, "confirmed")
	n(clConfirm, s.ConfirmDisagreed, "unconfirmed")
	n(clServed, s.ConfirmServed)
	n(clConfig, s.ConfigApplied, "applied")
	n(clConfig, s.ConfigRejected, "rejected")
}
