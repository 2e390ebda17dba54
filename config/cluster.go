package config

import (
	"net"
	"net/url"
	"os"
	"strconv"
	"time"
)

// ClusterConfig is the validated cluster section, secrets resolved.
type ClusterConfig struct {
	Endpoints     []string
	NodeID        string
	Zone          string
	Advertise     string
	LeaseTTL      time.Duration // 0: the cluster package's default
	ConfirmQuorum int           // 0: the default (1)
	Token         []byte
	PeerCAFile    string
	EtcdCAFile    string
	EtcdCertFile  string
	EtcdKeyFile   string
	EtcdUsername  string
	EtcdPassword  []byte
}

// buildCluster checks the cluster section. Endpoints and node_id may come
// from flags instead, so their absence is the daemon's to report.
func buildCluster(c *Cluster, p *problems) *ClusterConfig {
	if c == nil {
		return nil
	}
	out := &ClusterConfig{Endpoints: c.Endpoints, NodeID: c.NodeID, Zone: c.Zone, Advertise: c.Advertise,
		LeaseTTL: c.LeaseTTL.D, ConfirmQuorum: c.ConfirmQuorum, PeerCAFile: c.PeerCAFile,
		EtcdCAFile: c.Etcd.CAFile, EtcdCertFile: c.Etcd.CertFile, EtcdKeyFile: c.Etcd.KeyFile, EtcdUsername: c.Etcd.Username}
	for i, e := range c.Endpoints {
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add(fieldIndex("cluster.endpoints", i), "%q is not an etcd client URL (http://host:2379 or https://host:2379)", e)
		}
	}
	if c.NodeID != "" && !nameRE.MatchString(c.NodeID) {
		p.add("cluster.node_id", "%q: use 1-128 letters, digits, '.', '_' or '-'", c.NodeID)
	}
	if c.Zone != "" && !nameRE.MatchString(c.Zone) {
		p.add("cluster.zone", "%q: use 1-128 letters, digits, '.', '_' or '-'", c.Zone)
	}
	if c.Advertise != "" {
		host, port, err := net.SplitHostPort(c.Advertise)
		if ip := net.ParseIP(host); err != nil || host == "" || port == "" || port == "0" || (ip != nil && ip.IsUnspecified()) {
			p.add("cluster.advertise", "%q: want the host:port peers dial to reach this node's gRPC listener (not a wildcard, not port 0)", c.Advertise)
		}
	}
	if c.LeaseTTL.Set && (c.LeaseTTL.D < 2*time.Second || c.LeaseTTL.D > 5*time.Minute) {
		p.add("cluster.lease_ttl", "%s is outside 2s..5m (etcd's own floor is about 2s; longer delays every failover)", c.LeaseTTL.D)
	}
	if c.ConfirmQuorum < 0 {
		p.add("cluster.confirm_quorum", "%d is negative", c.ConfirmQuorum)
	}
	if c.Token != nil {
		out.Token = resolveSecret(p, "cluster.token", *c.Token)
	}
	if c.Etcd.Password != nil {
		out.EtcdPassword = resolveSecret(p, "cluster.etcd.password", *c.Etcd.Password)
	}
	if (c.Etcd.CertFile == "") != (c.Etcd.KeyFile == "") {
		p.add("cluster.etcd", "needs both cert_file and key_file, or neither")
	}
	for field, file := range map[string]string{"cluster.peer_ca_file": c.PeerCAFile, "cluster.etcd.ca_file": c.Etcd.CAFile,
		"cluster.etcd.cert_file": c.Etcd.CertFile, "cluster.etcd.key_file": c.Etcd.KeyFile} {
		if file != "" {
			if _, err := os.Stat(file); err != nil {
				p.add(field, "cannot read %s: %v", file, err)
			}
		}
	}
	return out
}

func fieldIndex(field string, i int) string {
	return field + "[" + strconv.Itoa(i) + "]"
}
