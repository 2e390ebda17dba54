package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fb4b1dcc/pulse/cluster"
	"github.com/fb4b1dcc/pulse/cluster/embedetcd"
	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/monitor"
)

// clusterTTL is the demo nodes' lease: short, so the failover shows
// within a few seconds of the kill.
const clusterTTL = 3 * time.Second

// clusterRun is `pulse demo --cluster N`: an embedded etcd and N nodes in
// this process, zones a, b, c, ... The first node serves the addresses the
// user gave (its API and dashboard show the whole fleet, mirrored); the
// fleet's senders beat to every node but the last, which hears its
// instances only by forwarding and is the one killed mid-run.
type clusterRun struct {
	etcd  *embedetcd.Server
	cli   *clientv3.Client
	nodes []*demoNode
}

type demoNode struct {
	id     string
	d      *daemon.Daemon
	cancel context.CancelCauseFunc
	done   chan error
	killed bool
}

func startCluster(opts Options, cfg *config.Config, dataDir, tmp string) (c *clusterRun, err error) {
	if opts.Cluster < 2 {
		return nil, fmt.Errorf("demo: a cluster needs at least 2 nodes (got %d)", opts.Cluster)
	}
	c = &clusterRun{}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if c.etcd, err = embedetcd.Start(embedetcd.Options{Dir: filepath.Join(tmp, "etcd")}); err != nil {
		return nil, err
	}
	for i := range opts.Cluster {
		id := fmt.Sprintf("node-%d", i+1)
		http, grpc, udp := "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		if i == 0 {
			http, grpc, udp = opts.HTTPAddr, opts.GRPCAddr, opts.UDPAddr
		}
		dir := filepath.Join(dataDir, id)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, err
		}
		d, err := daemon.New(daemon.Options{Config: cfg, HTTPAddr: http, GRPCAddr: grpc, UDPAddr: udp, DataDir: dir,
			Logger: opts.Logger.With("node", id),
			Cluster: &daemon.ClusterOptions{Endpoints: []string{c.etcd.Endpoint()}, NodeID: id, Zone: string(rune('a' + i%26)),
				LeaseTTL: clusterTTL, Tune: func(cc *cluster.Config) { cc.Settle = 300 * time.Millisecond }}})
		if err != nil {
			return nil, fmt.Errorf("demo: %s: %w", id, err)
		}
		ctx, cancel := context.WithCancelCause(context.Background())
		n := &demoNode{id: id, d: d, cancel: cancel, done: make(chan error, 1)}
		go func() { n.done <- d.Run(ctx) }()
		<-d.Ready()
		c.nodes = append(c.nodes, n)
	}
	cli, err := cluster.Dial([]string{c.etcd.Endpoint()}, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.cli = cli
	return c, nil
}

// upstream is where zone i's beats go: every node but the last.
func (c *clusterRun) upstream(i int) string {
	return c.nodes[i%(len(c.nodes)-1)].d.UDPAddr()
}

// kill crashes a node: it stops without revoking its lease, so the others
// take its instances over when the lease expires.
func (c *clusterRun) kill(i int) {
	n := c.nodes[i]
	if n.killed {
		return
	}
	n.killed = true
	n.cancel(cluster.ErrCrash)
	<-n.done
}

// push stores a configuration in etcd for every node to apply.
func (c *clusterRun) push(body string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := cluster.Push(ctx, c.cli, []byte(body))
	return err
}

func (c *clusterRun) close() {
	for _, n := range c.nodes {
		if !n.killed {
			n.killed = true
			n.cancel(context.Canceled)
			<-n.done
		}
	}
	if c.cli != nil {
		c.cli.Close()
	}
	if c.etcd != nil {
		c.etcd.Close()
	}
}

// describe says what runs where.
func (c *clusterRun) describe(out io.Writer) {
	fmt.Fprintf(out, "cluster: %d nodes on an embedded etcd (%s), lease TTL %s:\n", len(c.nodes), c.etcd.Endpoint(), clusterTTL)
	for i, n := range c.nodes {
		role := "beats from the fleet's senders"
		if i == len(c.nodes)-1 {
			role = "hears its instances only by forwarding; killed mid-run"
		}
		fmt.Fprintf(out, "  %s zone %c  API http://%s/  gRPC %s  UDP %s  (%s)\n", n.id, 'a'+i%26, n.d.HTTPAddr(), n.d.GRPCAddr(), n.d.UDPAddr(), role)
	}
}

// clusterStep kills the last node a third into the first cycle, then
// reports when the survivors own its instances.
func (r *runner) clusterStep() step {
	return step{0.30, 0, fmt.Sprintf("cluster: node-%d crashes (no goodbye: its peers wait for its lease to expire)", len(r.cl.nodes)),
		func(r *runner, cycle int) {
			if cycle > 0 {
				return
			}
			last := len(r.cl.nodes) - 1
			victim := r.cl.nodes[last]
			survivors := r.cl.nodes[:last]
			owned := 0
			for _, s := range r.d.Monitor().Services() {
				vs, _, _ := r.d.Monitor().Instances(s.Name, monitor.Filter{})
				for _, v := range vs {
					if survivors[0].d.Cluster().Owner(s.Name, v.Instance) == victim.id {
						owned++
					}
				}
			}
			killed := time.Now()
			r.cl.kill(last)
			r.card.Killed = victim.id
			r.bg.Add(1)
			go func() {
				defer r.bg.Done()
				for time.Since(killed) < 30*time.Second {
					done := true
					for _, n := range survivors {
						done = done && !n.d.Cluster().Ring().Has(victim.id)
					}
					if done {
						r.card.Takeover = time.Since(killed)
						r.printf("%s  TAKEOVER %s's %d instances now judged by %d survivors, %.1fs after the crash (lease TTL %s)\n",
							r.stamp(), victim.id, owned, len(survivors), r.card.Takeover.Seconds(), clusterTTL)
						return
					}
					select {
					case <-r.quit:
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
				r.printf("%s  TAKEOVER of %s's instances did not happen within 30s\n", r.stamp(), victim.id)
			}()
		}, nil}
}

func (r *runner) printClusterCard() {
	c := r.card
	switch {
	case c.Killed == "":
		r.printf("cluster: no node was killed (the run ended first)\n")
	case c.Takeover == 0:
		r.printf("cluster: %s crashed; its instances were NOT taken over\n", c.Killed)
	default:
		r.printf("cluster: %s crashed; its instances were taken over in %.1fs (lease TTL %s)\n", c.Killed, c.Takeover.Seconds(), clusterTTL)
	}
}
