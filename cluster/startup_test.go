package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/cluster/embedetcd"
)

// A node that cannot reach etcd when it starts judges every instance alone
// (the single-node behaviour) instead of judging nothing; once etcd is
// there it joins, and a second node then takes its share, with no
// instance declared down along the way.
func TestStartsWithoutEtcd(t *testing.T) {
	addr, err := embedetcd.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := webServers(t, 12)
	f := &fleet{}
	for i, a := range addrs {
		f.active = append(f.active, inst{name: fmt.Sprintf("w%02d", i), zone: "a", target: "http://" + a + "/"})
	}
	cfg := f.config(t)
	n1 := startNode(t, "node-1", "a", nodeOpts{endpoint: "http://" + addr, cfg: cfg, noWait: true})
	var keys [][2]string
	for _, in := range f.active {
		keys = append(keys, [2]string{"web", in.name})
		if !n1.node.Owns("web", in.name) {
			t.Fatalf("before joining, node-1 does not own %s", in.name)
		}
	}
	waitFor(t, 10*time.Second, "node-1 to judge the fleet alone", func() bool { return allAlive(n1, keys) })
	select {
	case <-n1.node.Synced():
		t.Fatal("joined a cluster with no etcd")
	default:
	}

	etcd, err := embedetcd.Start(embedetcd.Options{Dir: t.TempDir(), ClientAddr: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	t.Cleanup(func() { n1.stop(context.Canceled) }) // before etcd closes: it leaves cleanly
	select {
	case <-n1.node.Synced():
	case <-time.After(10 * time.Second):
		t.Fatalf("node-1 did not join within 10s of etcd starting:\n%s", tail(n1.log.String(), 20))
	}
	n2 := startNode(t, "node-2", "b", nodeOpts{endpoint: etcd.Endpoint(), cfg: cfg})
	waitFor(t, 10*time.Second, "both nodes to share the fleet", func() bool {
		if n1.node.Ring().Len() != 2 || n2.node.Ring().Len() != 2 {
			return false
		}
		for _, k := range keys {
			if n1.node.Owns(k[0], k[1]) == n2.node.Owns(k[0], k[1]) {
				return false
			}
		}
		return true
	})
	time.Sleep(3 * time.Second)
	for _, n := range []*testNode{n1, n2} {
		if !allAlive(n, keys) {
			t.Errorf("%s", summary(n, keys))
		}
		if evs := n.eventsTo("down"); len(evs) > 0 {
			t.Errorf("%s: %s went down: %s", n.id, evs[0].Instance, evs[0].Reason)
		}
	}
}
