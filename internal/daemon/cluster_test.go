package daemon

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/api"
	"github.com/fb4b1dcc/pulse/cluster"
	"github.com/fb4b1dcc/pulse/cluster/embedetcd"
	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/wire"
)

// clusterConfig12: twelve declared passive instances in zones a, b, c
// (declared, with zones: beat-registered instances have the zone "", and
// the pulse_protection_active collector currently reports service and
// zone "" twice, which fails the whole /metrics scrape).
func clusterConfig12(t testing.TB) *config.Config {
	t.Helper()
	var b strings.Builder
	b.WriteString(`
defaults:
  verdict: {down_after: 500ms, recover_after: 2, startup_grace: 2s}
services:
  - name: fleet
    passive:
      interval: 200ms
      jitter: 20ms
      keys: [{id: 1, secret: {value: ` + fleetKey + `}}]
    instances:
`)
	for i := range 12 {
		fmt.Fprintf(&b, "      - {name: i%02d, zone: %c}\n", i, 'a'+i%3)
	}
	c, err := config.Parse("cluster.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func clusterOpts(t testing.TB, endpoint, id, zone string) Options {
	return Options{Config: clusterConfig12(t), InMemory: true, Cluster: &ClusterOptions{Endpoints: []string{endpoint}, NodeID: id,
		Zone: zone, LeaseTTL: 2 * time.Second, Tune: func(c *cluster.Config) {
			c.Settle, c.PublishInterval = 100*time.Millisecond, 50*time.Millisecond
		}}}
}

func instanceView(t *testing.T, base, svc, name string) (monitor.InstanceView, int) {
	t.Helper()
	var v monitor.InstanceView
	code := getJSON(t, base+"/api/v1/services/"+svc+"/instances/"+name, &v)
	return v, code
}

// Three `pulse serve` daemons in cluster mode: beats that reach one node
// are judged by their owners, every node's REST API serves the whole
// fleet (the owners' verdicts, mirrored), /metrics shows the cluster, and
// a node that stops hands its instances over at once (its lease is
// revoked, no TTL to wait for).
func TestClusterDaemons(t *testing.T) {
	etcd, err := embedetcd.Start(embedetcd.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	var nodes []*running
	for i, z := range []string{"a", "b", "c"} {
		nodes = append(nodes, startDaemon(t, clusterOpts(t, etcd.Endpoint(), fmt.Sprintf("node-%d", i+1), z)))
	}
	defer func() {
		for _, n := range nodes {
			if n != nil {
				n.stop(t)
			}
		}
	}()
	key, err := wire.NewKey(1, []byte(fleetKey))
	if err != nil {
		t.Fatal(err)
	}
	owners := map[string]string{}
	for i := range 12 {
		name := fmt.Sprintf("i%02d", i)
		hb, err := heartbeat.New(heartbeat.Config{Service: "fleet", Instance: name, Target: nodes[0].d.UDPAddr(), Key: key, Interval: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		stop := runSender(hb)
		defer stop()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ok := true
		for _, n := range nodes {
			if n.d.Cluster().Ring().Len() != 3 {
				ok = false
			}
			st := states(t, n.base, "fleet")
			for i := range 12 {
				if st[fmt.Sprintf("i%02d", i)] != "alive" {
					ok = false
				}
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fleet is not alive on every node: %v / %v / %v", states(t, nodes[0].base, "fleet"),
				states(t, nodes[1].base, "fleet"), states(t, nodes[2].base, "fleet"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 12 {
		name := fmt.Sprintf("i%02d", i)
		owners[name] = nodes[0].d.Cluster().Owner("fleet", name)
	}
	// An instance node-2 owns, read on node-3: node-2's verdict, mirrored.
	var probe string
	for name, o := range owners {
		if o == "node-2" {
			probe = name
		}
	}
	if probe == "" {
		t.Fatalf("node-2 owns none of %v", owners)
	}
	v, code := instanceView(t, nodes[2].base, "fleet", probe)
	if code != 200 || v.State != monitor.Alive || v.Source != "peer" {
		t.Fatalf("node-3's view of %s (owned by node-2): %d %s from %q", probe, code, v.State, v.Source)
	}
	if v, _ := instanceView(t, nodes[1].base, "fleet", probe); v.Source == "peer" || v.Beats == 0 {
		t.Fatalf("node-2 does not judge its own %s: source %q, %d beats", probe, v.Source, v.Beats)
	}
	resp, err := client.Get(nodes[0].base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"pulse_cluster_members 3", "pulse_cluster_etcd_healthy 1", `pulse_cluster_forwarded_beats_total{result="accepted"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if s := nodes[0].d.Cluster().Stats(); s.Forwarded == 0 {
		t.Errorf("node-1 forwarded no beats: %+v", s)
	}

	// node-2 stops: its lease is revoked, the others take over at once.
	stopped := time.Now()
	nodes[1].stop(t)
	nodes[1] = nil
	for nodes[0].d.Cluster().Ring().Len() != 2 || nodes[2].d.Cluster().Ring().Len() != 2 {
		if time.Since(stopped) > time.Second {
			t.Fatalf("a graceful stop took more than 1s to hand over (the lease TTL is 2s)")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	for _, n := range []*running{nodes[0], nodes[2]} {
		var l api.InstanceList
		getJSON(t, n.base+"/api/v1/services/fleet/instances", &l)
		for _, in := range l.Instances {
			if in.State != monitor.Alive {
				t.Errorf("%s after node-2 left: %s is %s (%s)", n.base, in.Instance, in.State, in.Reason)
			}
		}
	}
	// Whoever took node-2's instance over judges it from the beats node-1
	// forwards (200ms apart: about 10 in 2s).
	for _, n := range []*running{nodes[0], nodes[2]} {
		if n.d.Cluster().Owns("fleet", probe) {
			if v, _ := instanceView(t, n.base, "fleet", probe); v.Beats < 5 {
				t.Errorf("%s took %s over but counted %d beats since", n.d.Cluster().ID(), probe, v.Beats)
			}
		}
	}
}

func runSender(hb *heartbeat.Sender) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); hb.Run(ctx) }()
	return func() { cancel(); <-done }
}

// BenchmarkAPIReadNonOwner: reading an instance over REST from a node that
// does not own it (its owner's state, mirrored into the local monitor)
// against the same read on a single-node daemon, 1,000 instances each.
// A non-owner answers from memory, as the owner does: no call to the
// owner or to etcd on the read path.
func BenchmarkAPIReadNonOwner(b *testing.B) {
	etcd, err := embedetcd.Start(embedetcd.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(etcd.Close) // after the daemons' cleanups: they leave first
	cfg := benchConfig(b, 1000)
	single := startDaemonB(b, Options{Config: cfg, InMemory: true})
	var nodes []*running
	for i, z := range []string{"a", "b", "c"} {
		o := clusterOpts(b, etcd.Endpoint(), fmt.Sprintf("node-%d", i+1), z)
		o.Config = cfg
		nodes = append(nodes, startDaemonB(b, o))
	}
	for nodes[0].d.Cluster().Ring().Len() != 3 {
		time.Sleep(10 * time.Millisecond)
	}
	var name string
	for i := range 1000 {
		if n := fmt.Sprintf("i%04d", i); nodes[0].d.Cluster().Owner("fleet", n) == "node-2" {
			name = n
			break
		}
	}
	read := func(b *testing.B, url string) {
		for range b.N {
			resp, err := client.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("%s: %d", url, resp.StatusCode)
			}
		}
	}
	for _, c := range []struct{ name, path string }{
		{"instance", "/api/v1/services/fleet/instances/" + name},
		{"list100", "/api/v1/services/fleet/instances?limit=100"},
	} {
		var base float64
		b.Run(c.name+"/single-node", func(b *testing.B) {
			read(b, single.base+c.path)
			base = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		})
		b.Run(c.name+"/cluster-non-owner", func(b *testing.B) {
			read(b, nodes[0].base+c.path)
			if base > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/base, "x-vs-single-node")
			}
		})
	}
}

func benchConfig(b *testing.B, n int) *config.Config {
	var sb strings.Builder
	sb.WriteString("services:\n  - name: fleet\n    passive:\n      interval: 1s\n      keys: [{id: 1, secret: {value: " + fleetKey + "}}]\n    instances:\n")
	for i := range n {
		fmt.Fprintf(&sb, "      - {name: i%04d, zone: %c}\n", i, 'a'+i%3)
	}
	c, err := config.Parse("bench.yaml", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// startDaemonB starts a daemon for a benchmark; b.Cleanup stops it.
func startDaemonB(b *testing.B, opts Options) *running {
	b.Helper()
	opts.HTTPAddr, opts.GRPCAddr, opts.UDPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	d, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, cancel: cancel, done: make(chan error, 1), base: "http://" + d.HTTPAddr()}
	go func() { r.done <- d.Run(ctx) }()
	<-d.Ready()
	b.Cleanup(func() { cancel(); <-r.done })
	return r
}

// The cluster section of pulse.yaml turns cluster mode on; flags override
// it field by field; no endpoints anywhere means a single node.
func TestClusterConfigMerge(t *testing.T) {
	t.Setenv("PULSE_TEST_CLUSTER_TOKEN", "cluster-token-0123456789")
	c, err := config.Parse("c.yaml", []byte(`cluster:
  endpoints: [http://etcd1:2379]
  node_id: from-file
  zone: a
  lease_ttl: 7s
  confirm_quorum: 2
  token: {env: PULSE_TEST_CLUSTER_TOKEN}
`))
	if err != nil {
		t.Fatal(err)
	}
	cc, on, err := clusterConfig(nil, c, nil)
	if err != nil || !on || cc.NodeID != "from-file" || cc.Zone != "a" || cc.LeaseTTL != 7*time.Second || cc.Quorum != 2 ||
		string(cc.Token) != "cluster-token-0123456789" || len(cc.Endpoints) != 1 {
		t.Fatalf("from the file: %+v %v %v", cc, on, err)
	}
	cc, on, err = clusterConfig(&ClusterOptions{Endpoints: []string{"http://other:2379"}, NodeID: "from-flag"}, c, nil)
	if err != nil || !on || cc.NodeID != "from-flag" || cc.Zone != "a" || cc.Endpoints[0] != "http://other:2379" {
		t.Fatalf("flags over the file: %+v %v %v", cc, on, err)
	}
	plain, err := config.Parse("p.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, on, err := clusterConfig(&ClusterOptions{NodeID: "x"}, plain, nil); on || err != nil {
		t.Fatalf("no endpoints anywhere: cluster mode %v (%v)", on, err)
	}
	// Cluster mode without a node id is refused with what to do.
	_, err = New(Options{Config: plain, HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0", InMemory: true,
		Cluster: &ClusterOptions{Endpoints: []string{"http://127.0.0.1:1"}}})
	if err == nil || !strings.Contains(err.Error(), "--node-id") {
		t.Fatalf("no node id: %v", err)
	}
}
