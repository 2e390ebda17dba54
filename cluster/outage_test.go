package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/internal/faultnet/toxi"
)

// etcd unreachable for 30 s (every node's connection to it blackholed, as
// a partition does; etcd itself keeps running, so every lease expires):
// the nodes keep judging their shards from local state with ownership
// frozen (a beat sender and a target that die meanwhile are declared
// down by their owners, nothing else is), and when etcd is back they
// re-register, republish, and every node's view converges on the
// verdicts of the outage, without moving a single instance.
func TestEtcdOutage(t *testing.T) {
	etcd := startEtcd(t)
	cli := etcdClient(t, etcd.Endpoint())
	proxy, err := toxi.New(etcd.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Clear(); proxy.Close() })
	addrs, _ := webServers(t, 29)
	deadAddr, killTarget := webServer(t)
	f := &fleet{secret: newSecret()}
	zones := []string{"a", "b", "c"}
	for i := range 60 {
		f.passive = append(f.passive, inst{name: fmt.Sprintf("b%03d", i), zone: zones[i%3]})
	}
	for i, a := range append(addrs, deadAddr) {
		f.active = append(f.active, inst{name: fmt.Sprintf("w%03d", i), zone: zones[i%3], target: "http://" + a + "/"})
	}
	cfg := f.config(t)
	var nodes []*testNode
	for i, z := range zones {
		nodes = append(nodes, startNode(t, fmt.Sprintf("node-%d", i+1), z, nodeOpts{endpoint: "http://" + proxy.Addr(), cfg: cfg}))
	}
	keys := f.keys()
	snd := startSenders(t, f, func(i int) string { return nodes[i%2].recv.UDPAddr().String() })
	waitFor(t, 20*time.Second, "three members and every instance alive everywhere", func() bool {
		for _, n := range nodes {
			if n.node.Ring().Len() != 3 || !allAlive(n, keys) {
				return false
			}
		}
		return true
	}, func() string {
		return summary(nodes[0], keys) + "\n" + summary(nodes[1], keys) + "\n" + summary(nodes[2], keys)
	})
	views := map[string]uint64{}
	for _, n := range nodes {
		views[n.id] = n.node.Stats().ViewChanges
	}
	deadBeat, deadWeb := "b007", "w029"
	ownerOf := map[string]*testNode{}
	for _, n := range nodes {
		if n.node.Owns("beats", deadBeat) {
			ownerOf[deadBeat] = n
		}
		if n.node.Owns("web", deadWeb) {
			ownerOf[deadWeb] = n
		}
	}

	// etcd becomes unreachable.
	if err := proxy.Blackhole(); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	waitFor(t, 10*time.Second, "every node to notice it lost etcd", func() bool {
		for _, n := range nodes {
			if n.node.Healthy() {
				return false
			}
		}
		return true
	})
	// Two instances really die during the outage.
	snd.kill(deadBeat)
	killTarget()
	waitFor(t, 15*time.Second, "their owners to declare them down without etcd", func() bool {
		return ownerOf[deadBeat].state("beats", deadBeat).State.String() == "down" &&
			ownerOf[deadWeb].state("web", deadWeb).State.String() == "down"
	}, func() string { return summary(ownerOf[deadBeat], keys) + "\n" + summary(ownerOf[deadWeb], keys) })
	// The rest of the outage: each node keeps its shard and its view.
	for time.Since(cut) < 30*time.Second {
		for _, n := range nodes {
			if n.node.Ring().Len() != 3 {
				t.Fatalf("%s changed its view during the outage: %v", n.id, memberIDs(n.node.Ring()))
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, n := range nodes {
		for _, k := range keys {
			if !n.node.Owns(k[0], k[1]) || k[1] == deadBeat || k[1] == deadWeb {
				continue
			}
			if v := n.state(k[0], k[1]); v.State.String() != "alive" {
				t.Errorf("%s: %s/%s is %s during the outage: %s", n.id, k[0], k[1], v.State, v.Reason)
			}
		}
	}

	// etcd is back.
	proxy.Clear()
	back := time.Now()
	waitFor(t, 20*time.Second, "every node to rejoin and see the outage's verdicts", func() bool {
		for _, n := range nodes {
			if !n.node.Healthy() || n.node.Ring().Len() != 3 ||
				n.state("beats", deadBeat).State.String() != "down" || n.state("web", deadWeb).State.String() != "down" {
				return false
			}
		}
		return true
	}, func() string {
		return summary(nodes[0], keys) + "\n" + summary(nodes[1], keys) + "\n" + summary(nodes[2], keys)
	})
	// Every state is published again, under the new leases, by its owner.
	waitFor(t, 10*time.Second, "every instance's state republished by its owner", func() bool {
		p := published(t, cli)
		if len(p) != len(keys) {
			return false
		}
		for _, k := range keys {
			if p[k[0]+"/"+k[1]] != nodes[0].node.Owner(k[0], k[1]) {
				return false
			}
		}
		return true
	})
	t.Logf("reconciled %s after etcd came back", time.Since(back).Round(10*time.Millisecond))
	time.Sleep(5*time.Second + time.Second) // past the hold: nothing moves later either
	for _, n := range nodes {
		s := n.node.Stats()
		if s.ViewChanges != views[n.id] {
			t.Errorf("%s changed its view %d times across the outage, want 0", n.id, s.ViewChanges-views[n.id])
			for _, m := range nodes {
				for _, l := range strings.Split(m.log.String(), "\n") {
					if strings.Contains(l, "new view") || strings.Contains(l, "etcd answers again") || strings.Contains(l, "stopped answering") {
						t.Log(m.id, l)
					}
				}
			}
		}
		if s.Reregistrations == 0 {
			t.Errorf("%s did not re-register, though its lease expired", n.id)
		}
		for _, e := range n.eventsTo("down") {
			if e.Instance != deadBeat && e.Instance != deadWeb {
				t.Errorf("%s: %s/%s went down: %s", n.id, e.Service, e.Instance, e.Reason)
			}
		}
		if !allAliveExcept(n, keys, deadBeat, deadWeb) {
			t.Errorf("after the outage: %s", summary(n, keys))
		}
	}
}

func allAliveExcept(n *testNode, keys [][2]string, except ...string) bool {
	for _, k := range keys {
		skip := false
		for _, e := range except {
			skip = skip || k[1] == e
		}
		if skip {
			continue
		}
		if v, err := n.mon.Instance(k[0], k[1]); err != nil || v.State.String() != "alive" {
			return false
		}
	}
	return true
}
