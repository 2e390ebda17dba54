package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/config"
)

// A configuration pushed to etcd reaches every node, which validates it
// and applies it through the reload path; an invalid one is rejected by
// every node with its errors (logged and reported in etcd), and the
// configuration in force keeps running. Local file changes are refused
// while etcd's configuration is in force.
func TestConfigPush(t *testing.T) {
	etcd := startEtcd(t)
	cli := etcdClient(t, etcd.Endpoint())
	addrs, _ := webServers(t, 6)
	f := &fleet{}
	for i, a := range addrs {
		f.active = append(f.active, inst{name: fmt.Sprintf("w%d", i), zone: "a", target: "http://" + a + "/"})
	}
	cfg := f.config(t)
	var nodes []*testNode
	for i := range 3 {
		nodes = append(nodes, startNode(t, fmt.Sprintf("node-%d", i+1), "a", nodeOpts{endpoint: etcd.Endpoint(), cfg: cfg}))
	}
	waitFor(t, 10*time.Second, "three members", func() bool { return nodes[0].node.Ring().Len() == 3 && nodes[2].node.Ring().Len() == 3 })

	// A valid configuration with a second service.
	f.extra = "  - name: extra\n    active: [{module: web, interval: 2s}]\n    instances: [{name: x0, zone: a, target: \"http://" + addrs[0] + "/x\"}]\n"
	good := []byte(f.yaml())
	if _, err := config.Parse("good.yaml", good); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hash, err := Push(ctx, cli, good)
	if err != nil {
		t.Fatal(err)
	}
	sts, err := WaitApplied(ctx, cli, hash)
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 3 {
		t.Fatalf("%d nodes reported, want 3: %+v", len(sts), sts)
	}
	for _, s := range sts {
		if !s.Applied(hash) {
			t.Errorf("%s did not apply %s: %+v", s.Node, hash, s.Status)
		}
	}
	for _, n := range nodes {
		if sp := n.mon.Spec(); sp.Hash != hash || len(sp.Services) != 2 {
			t.Errorf("%s runs %s with %d services, want %s with 2", n.id, sp.Hash, len(sp.Services), hash)
		}
		if !n.node.ConfigFromEtcd() {
			t.Errorf("%s does not say its configuration came from etcd", n.id)
		}
	}
	waitFor(t, 15*time.Second, "the new service's instance to be judged alive everywhere", func() bool {
		for _, n := range nodes {
			if v, err := n.mon.Instance("extra", "x0"); err != nil || v.State.String() != "alive" {
				return false
			}
		}
		return true
	})

	// An invalid one, written straight to etcd (as an older pulse, or
	// etcdctl, could): every node rejects it and keeps running the old.
	bad := []byte(strings.Replace(string(good), "interval: 2s", "interval: 2", 1))
	badHash, err := Push(ctx, cli, bad)
	if err != nil {
		t.Fatal(err)
	}
	sts, err = WaitApplied(ctx, cli, badHash)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sts {
		if s.Applied(badHash) || s.Status.Rejected != badHash || s.Status.Applied != hash {
			t.Errorf("%s: %+v, want %s rejected and %s still applied", s.Node, s.Status, badHash, hash)
		}
		if len(s.Status.Errors) != 1 || !strings.Contains(s.Status.Errors[0], "needs a unit") ||
			!strings.Contains(s.Status.Errors[0], "services[1].active") {
			t.Errorf("%s reports %q, want the interval's error with its field", s.Node, s.Status.Errors)
		}
	}
	for _, n := range nodes {
		if sp := n.mon.Spec(); sp.Hash != hash {
			t.Errorf("%s runs %s after a bad push, want %s still", n.id, sp.Hash, hash)
		}
		if !strings.Contains(n.log.String(), `"msg":"configuration from etcd rejected; the running configuration stays"`) ||
			!strings.Contains(n.log.String(), `"field":"services[1].active"`) {
			t.Errorf("%s did not log the rejection with its field:\n%s", n.id, tail(n.log.String(), 10))
		}
		if v, err := n.mon.Instance("extra", "x0"); err != nil || v.State.String() != "alive" {
			t.Errorf("%s: the running configuration's instance is %v (%v)", n.id, v.State, err)
		}
		if s := n.node.Stats(); s.ConfigApplied != 1 || s.ConfigRejected != 1 {
			t.Errorf("%s: %d applied, %d rejected; want 1 and 1", n.id, s.ConfigApplied, s.ConfigRejected)
		}
	}
	// The local file no longer rules.
	if err := nodes[0].node.ApplyLocal(cfg); !errors.Is(err, ErrManagedInEtcd) {
		t.Errorf("local apply while etcd's configuration is in force: %v", err)
	}
}
