package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fb4b1dcc/pulse/config"
)

// ErrManagedInEtcd is returned for a local configuration change while the
// configuration in force came from etcd.
var ErrManagedInEtcd = errors.New("cluster: the configuration is managed in etcd (pulse config push); local file changes are not applied")

// configSync applies configurations: from etcd (every node validates and
// applies the same bytes through the same path as a file reload), or from
// the local file while etcd holds none. In both cases, when the
// configuration lists no anchors, the node's connectivity check is its
// peers' gRPC addresses, re-applied as the membership changes.
type configSync struct {
	n *Node

	mu      sync.Mutex
	hash    string         // of the etcd configuration in force ("" none)
	last    *config.Config // the configuration in force, as written
	anchors []string       // the anchors derived from peers, in force
	status  ConfigStatusRecord
}

// hashOf matches config's hash (first 12 hex digits of SHA-256), so the
// hash a node reports for a rejected configuration is the one `pulse
// config push` printed.
func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:6])
}

// initial records the configuration the daemon applied at start.
func (c *configSync) initial(cfg *config.Config) {
	c.mu.Lock()
	c.last = cfg
	c.status = ConfigStatusRecord{Node: c.n.cfg.NodeID, Applied: cfg.Hash}
	c.mu.Unlock()
}

// fromEtcd validates and applies a configuration read from etcd. A bad one
// is logged with every error and reported under config-status; the
// running configuration stays.
func (c *configSync) fromEtcd(ctx context.Context, data []byte) {
	n := c.n
	hash := hashOf(data)
	c.mu.Lock()
	same := hash == c.hash || hash == c.status.Rejected
	c.mu.Unlock()
	if same {
		return
	}
	cfg, err := config.Parse("etcd:"+ConfigKey, data)
	if err == nil {
		err = n.apply(c.withAnchors(cfg))
	}
	c.mu.Lock()
	running := c.status.Applied
	if err != nil {
		c.status.Rejected, c.status.Errors = hash, nil
		for _, fe := range config.FieldErrors(err) {
			c.status.Errors = append(c.status.Errors, fe.Error())
		}
		if len(c.status.Errors) == 0 {
			c.status.Errors = []string{err.Error()}
		}
	} else {
		c.hash, c.last = hash, cfg
		c.status.Applied, c.status.Rejected, c.status.Errors = hash, "", nil
	}
	c.mu.Unlock()
	if err != nil {
		n.stats.configRejected.Add(1)
		fes := config.FieldErrors(err)
		if len(fes) == 0 {
			n.log.Error("configuration from etcd rejected; the running configuration stays", "hash", hash, "err", err, "running_hash", running)
		}
		for _, fe := range fes {
			n.log.Error("configuration from etcd rejected; the running configuration stays", "hash", hash, "line", fe.Line,
				"field", fe.Field, "err", fe.Msg, "running_hash", running)
		}
	} else {
		n.etcdConf.Store(true)
		n.stats.configApplied.Add(1)
		n.log.Info("configuration from etcd applied", "hash", hash, "services", len(cfg.Spec.Services))
	}
	c.writeStatus(ctx)
}

// local applies a configuration from the local file, unless etcd's is in
// force.
func (c *configSync) local(cfg *config.Config) error {
	if c.n.etcdConf.Load() {
		return ErrManagedInEtcd
	}
	if err := c.n.apply(c.withAnchors(cfg)); err != nil {
		return err
	}
	c.mu.Lock()
	c.last = cfg
	c.status.Applied = cfg.Hash
	c.mu.Unlock()
	return nil
}

// ApplyLocal is the daemon's file-reload path in cluster mode.
func (n *Node) ApplyLocal(cfg *config.Config) error { return n.cfgSync.local(cfg) }

// withAnchors returns cfg with the peers' gRPC addresses as anchors when
// it names none.
func (c *configSync) withAnchors(cfg *config.Config) *config.Config {
	if len(cfg.Spec.Anchors) > 0 {
		return cfg
	}
	peers := c.peerAnchors()
	c.mu.Lock()
	c.anchors = peers
	c.mu.Unlock()
	if len(peers) == 0 {
		return cfg
	}
	cp := *cfg
	cp.Spec.Anchors = peers
	return &cp
}

func (c *configSync) peerAnchors() []string {
	var out []string
	for _, m := range c.n.ring.Load().members {
		if m.ID != c.n.cfg.NodeID && m.GRPC != "" {
			out = append(out, m.GRPC)
		}
	}
	slices.Sort(out)
	return out
}

// ringChanged re-applies the configuration when its derived anchors
// changed.
func (c *configSync) ringChanged() {
	c.mu.Lock()
	last, prev := c.last, c.anchors
	c.mu.Unlock()
	if last == nil || len(last.Spec.Anchors) > 0 || slices.Equal(prev, c.peerAnchors()) {
		return
	}
	if err := c.n.apply(c.withAnchors(last)); err != nil {
		c.n.log.Error("re-applying the configuration with the peers as anchors failed", "err", err)
	}
}

// writeStatus reports this node's configuration under its lease.
func (c *configSync) writeStatus(ctx context.Context) {
	n := c.n
	lease := clientv3.LeaseID(n.lease.Load())
	if lease == 0 {
		return
	}
	c.mu.Lock()
	st := c.status
	c.mu.Unlock()
	st.Node, st.At = n.cfg.NodeID, time.Now().UTC()
	b, err := json.Marshal(st)
	if err != nil {
		return
	}
	cctx, cancel := n.etcdCtx(ctx)
	defer cancel()
	if _, err := n.cli.Load().Put(cctx, ConfigStatus+n.cfg.NodeID, string(b), clientv3.WithLease(lease)); err != nil && n.limiter.allow("config-status") {
		n.log.Warn("could not report the configuration status to etcd", "err", err)
	}
}
