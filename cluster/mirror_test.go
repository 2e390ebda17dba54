package cluster

import (
	"fmt"
	"testing"
	"time"
)

// Instances that register by their beats exist only where their beats
// arrive; in a cluster the owner creates them from forwarded beats and
// every other node from the owner's published state.
func TestBeatRegisteredInstancesReachEveryNode(t *testing.T) {
	etcd := startEtcd(t)
	f := &fleet{secret: newSecret()}
	f.extra = fmt.Sprintf("  - name: dyn\n    register_by_beats: true\n    passive: {interval: 500ms, keys: [{id: 1, secret: {value: %s}}]}\n", f.secret)
	cfg := f.config(t)
	n1 := startNode(t, "node-1", "a", nodeOpts{endpoint: etcd.Endpoint(), cfg: cfg})
	n2 := startNode(t, "node-2", "b", nodeOpts{endpoint: etcd.Endpoint(), cfg: cfg})
	waitFor(t, 10*time.Second, "two members", func() bool { return n1.node.Ring().Len() == 2 && n2.node.Ring().Len() == 2 })
	dyn := &fleet{secret: f.secret}
	for i := range 8 {
		dyn.passive = append(dyn.passive, inst{name: fmt.Sprintf("pod-%d", i)})
	}
	startSendersTo(t, dyn, "dyn", func(int) string { return n1.recv.UDPAddr().String() })
	waitFor(t, 15*time.Second, "every pod alive on both nodes", func() bool {
		for _, n := range []*testNode{n1, n2} {
			for _, in := range dyn.passive {
				if v, err := n.mon.Instance("dyn", in.name); err != nil || v.State.String() != "alive" {
					return false
				}
			}
		}
		return true
	})
	time.Sleep(1500 * time.Millisecond) // a few more beats
	owned2 := 0
	for _, in := range dyn.passive {
		if !n2.node.Owns("dyn", in.name) {
			continue
		}
		owned2++
		if v := n2.state("dyn", in.name); v.Beats < 2 || v.Source == "peer" {
			t.Errorf("node-2 owns %s but does not judge it: %d beats, source %q", in.name, v.Beats, v.Source)
		}
		if v := n1.state("dyn", in.name); v.Source != "peer" {
			t.Errorf("node-1 shows %s (owned by node-2) from %q, want the owner's state", in.name, v.Source)
		}
	}
	if owned2 == 0 {
		t.Fatal("node-2 owns no pod; the test proves nothing")
	}
}
