package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// testFleet is 300 instances: 200 passive (UDP beats) and 100 probed over
// HTTP, in zones a, b and c.
func testFleet(t *testing.T) *fleet {
	t.Helper()
	addrs, _ := webServers(t, 100)
	f := &fleet{secret: newSecret()}
	zones := []string{"a", "b", "c"}
	for i := range 200 {
		f.passive = append(f.passive, inst{name: fmt.Sprintf("b%03d", i), zone: zones[i%3]})
	}
	for i := range 100 {
		f.active = append(f.active, inst{name: fmt.Sprintf("w%03d", i), zone: zones[i%3], target: fmt.Sprintf("http://%s/w%03d", addrs[i], i)})
	}
	return f
}

func (f *fleet) keys() [][2]string {
	var out [][2]string
	for _, in := range f.passive {
		out = append(out, [2]string{"beats", in.name})
	}
	for _, in := range f.active {
		out = append(out, [2]string{"web", in.name})
	}
	return out
}

// summary counts a node's view of the instances by state and owner.
func summary(n *testNode, keys [][2]string) string {
	c := map[string]int{}
	var sample []string
	for _, k := range keys {
		v, err := n.mon.Instance(k[0], k[1])
		st := "missing"
		if err == nil {
			st = v.State.String()
		}
		c[st+"@"+n.node.Owner(k[0], k[1])]++
		if st != "alive" && len(sample) < 3 {
			sample = append(sample, fmt.Sprintf("%s/%s %s %q src=%s", k[0], k[1], st, v.Reason, v.Source))
		}
	}
	return fmt.Sprintf("%s: %v %v", n.id, c, sample)
}

// allAlive reports whether every instance is alive in the node's view
// (its own judgement or the owner's, mirrored).
func allAlive(n *testNode, keys [][2]string) bool {
	for _, k := range keys {
		v, err := n.mon.Instance(k[0], k[1])
		if err != nil || v.State.String() != "alive" {
			return false
		}
	}
	return true
}

// published returns, per instance, the owner named by its state in etcd.
func published(t *testing.T, cli *clientv3.Client) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, StateKey, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range r.Kvs {
		var rec stateRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			t.Fatal(err)
		}
		out[rec.Service+"/"+rec.Instance] = rec.Owner
	}
	return out
}

// Three nodes share 300 instances evenly; when one is killed, only its
// instances move, the survivors take them over within lease TTL + one
// interval, and no instance is declared down (or even suspect) across the
// failover.
func TestFailover(t *testing.T) {
	etcd := startEtcd(t)
	cli := etcdClient(t, etcd.Endpoint())
	f := testFleet(t)
	cfg := f.config(t)
	var nodes []*testNode
	for i, z := range []string{"a", "b", "c"} {
		nodes = append(nodes, startNode(t, fmt.Sprintf("node-%d", i+1), z, nodeOpts{endpoint: etcd.Endpoint(), cfg: cfg}))
	}
	keys := f.keys()
	waitFor(t, 10*time.Second, "every node to see three members", func() bool {
		for _, n := range nodes {
			if n.node.Ring().Len() != 3 {
				return false
			}
		}
		return true
	})

	// Balance: each node owns 100 ± 15%, and every node agrees on who.
	owners := map[string]string{}
	count := map[string]int{}
	for _, k := range keys {
		o := nodes[0].node.Owner(k[0], k[1])
		for _, n := range nodes[1:] {
			if got := n.node.Owner(k[0], k[1]); got != o {
				t.Fatalf("%s/%s: node-1 says %s owns it, %s says %s", k[0], k[1], o, n.id, got)
			}
		}
		owners[k[0]+"/"+k[1]] = o
		count[o]++
	}
	for _, n := range nodes {
		if c := count[n.id]; c < 85 || c > 115 {
			t.Errorf("%s owns %d of 300 instances, outside 100 ± 15%%", n.id, c)
		}
	}
	t.Logf("ownership: %v", count)

	// Senders beat to node-1 and node-2 (the address a VIP or DNS name
	// would give them); node-3 hears its instances only by forwarding.
	startSenders(t, f, func(i int) string { return nodes[i%2].recv.UDPAddr().String() })
	waitFor(t, 20*time.Second, "all 300 instances alive on every node", func() bool {
		for _, n := range nodes {
			if !allAlive(n, keys) {
				return false
			}
		}
		return true
	}, func() string {
		return summary(nodes[0], keys) + "\n" + summary(nodes[1], keys) + "\n" + summary(nodes[2], keys)
	})
	if s := nodes[2].node.Stats(); s.ForwardReceived == 0 {
		t.Fatalf("node-3 received no forwarded beats: %+v", s)
	}
	pub := published(t, cli)
	for k, o := range owners {
		if pub[k] != o {
			t.Fatalf("%s: etcd names %q as owner, want %s", k, pub[k], o)
		}
	}
	// A few seconds of steady state, then the crash.
	time.Sleep(3 * time.Second)
	survivors := nodes[:2]
	before := map[string]int{}
	for _, n := range survivors {
		before[n.id] = int(n.node.Stats().ViewChanges)
	}
	killed := time.Now()
	nodes[2].crash()

	// Takeover: both survivors drop node-3 from their view, and every
	// instance's state in etcd names a live owner (node-3's expired with
	// its lease; the new owners published theirs).
	bound := testTTL + time.Second // lease TTL + one interval
	var viewAt, pubAt time.Duration
	deadline := killed.Add(bound + 5*time.Second)
	for time.Now().Before(deadline) && (viewAt == 0 || pubAt == 0) {
		if viewAt == 0 && survivors[0].node.Ring().Len() == 2 && survivors[1].node.Ring().Len() == 2 {
			viewAt = time.Since(killed)
		}
		if viewAt > 0 && pubAt == 0 {
			p := published(t, cli)
			done := len(p) == len(keys)
			for _, o := range p {
				done = done && o != "node-3"
			}
			if done {
				pubAt = time.Since(killed)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("takeover: views changed %s after the crash, states republished after %s (bound %s)", viewAt, pubAt, bound)
	if viewAt == 0 || viewAt > bound || pubAt == 0 || pubAt > bound {
		for _, n := range survivors {
			for _, l := range strings.Split(n.log.String(), "\n") {
				if strings.Contains(l, "published instance states") || strings.Contains(l, "new view") {
					t.Log(n.id, l)
				}
			}
		}
		t.Fatalf("takeover took %s (view) / %s (published), want both within lease TTL + one interval = %s", viewAt, pubAt, bound)
	}
	moved := 0
	for _, k := range keys {
		was, now := owners[k[0]+"/"+k[1]], survivors[0].node.Owner(k[0], k[1])
		if was != "node-3" && now != was {
			t.Errorf("%s/%s moved from %s to %s, though %s is alive", k[0], k[1], was, now, was)
		}
		if was == "node-3" {
			moved++
			if now == "node-3" {
				t.Errorf("%s/%s still owned by the dead node", k[0], k[1])
			}
		}
	}
	for _, n := range survivors {
		if got := int(n.node.Stats().ViewChanges) - before[n.id]; got != 1 {
			t.Errorf("%s changed its view %d times across one crash, want 1", n.id, got)
		}
	}

	// Judged by the survivors for a while: still no down, no suspect.
	time.Sleep(6 * time.Second)
	for _, n := range survivors {
		if !allAlive(n, keys) {
			var bad []string
			for _, k := range keys {
				if v := n.state(k[0], k[1]); v.State.String() != "alive" {
					bad = append(bad, fmt.Sprintf("%s/%s %s (%s)", k[0], k[1], v.State, v.Reason))
				}
			}
			t.Errorf("%s: not alive after the takeover: %s", n.id, strings.Join(bad, "; "))
		}
		for _, to := range []string{"down", "suspect", "protected"} {
			if evs := n.eventsTo(to); len(evs) > 0 {
				t.Errorf("%s: %d %s transitions, e.g. %s/%s at crash%+.1fs: %s", n.id, len(evs), to, evs[0].Service, evs[0].Instance,
					evs[0].Time.Sub(killed).Seconds(), evs[0].Reason)
			}
		}
	}
	t.Logf("%d instances moved from node-3; survivor stats: %+v / %+v", moved, survivors[0].node.Stats(), survivors[1].node.Stats())
}
