package cluster

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/internal/faultnet/toxi"
	"github.com/fb4b1dcc/pulse/probe"
)

// A node whose link to one zone degrades declares nothing in that zone
// down: before a down verdict it asks the nodes of the other zones, which
// probe the targets themselves and see them answer, so its instances stay
// suspect with their answers as the reason. A target that really died is
// still declared down, with the other zones' agreement, within the
// documented bound: (retries + 1) × interval + down_after + one
// confirmation round (probe timeout + RPC) + one interval of scheduling
// slack.
func TestDegradedLinkNeedsOtherVantages(t *testing.T) {
	etcd := startEtcd(t)
	const perZone = 20
	zones := []string{"a", "b", "c"}
	addrs, _ := webServers(t, 3*perZone)
	deadAddr, killDead := webServer(t)
	deadCAddr, killDeadC := webServer(t)

	// Two targets will die, both owned by node-1, the node with the
	// degraded link: one in zone b (the hardest case: its owner cannot
	// tell a dead target from its own bad link) and one in zone c (alive
	// in every view until it dies: the detection time to bound).
	ring := NewRing(members("node-1", "node-2", "node-3"))
	ownedBy1 := func(prefix string) string {
		for i := 0; ; i++ {
			if name := fmt.Sprintf("%s%d", prefix, i); ring.Owner("web", name) == "node-1" {
				return name
			}
		}
	}
	dead, deadC := ownedBy1("deadb"), ownedBy1("deadc")
	f := &fleet{noProtection: true}
	for i, addr := range addrs {
		f.active = append(f.active, inst{name: fmt.Sprintf("w%02d", i), zone: zones[i%3], target: "http://" + addr + "/healthz"})
	}
	f.active = append(f.active, inst{name: dead, zone: "b", target: "http://" + deadAddr + "/healthz"},
		inst{name: deadC, zone: "c", target: "http://" + deadCAddr + "/healthz"})
	cfg := f.config(t)

	// node-1 reaches zone b's targets through toxiproxy (one proxy per
	// target, latency switched on later); the other nodes reach them
	// directly.
	via := map[string]string{}
	var proxies []*toxi.Proxy
	for _, in := range f.active {
		if in.zone != "b" {
			continue
		}
		host := strings.TrimSuffix(strings.TrimPrefix(in.target, "http://"), "/healthz")
		p, err := toxi.New(host)
		if err != nil {
			t.Fatal(err)
		}
		// Removing the toxics first lets delayed chunks finish: a latency
		// toxic's goroutine outlives a plain Close by its delay.
		t.Cleanup(func() { p.Clear(); p.Close() })
		proxies = append(proxies, p)
		via[host] = p.Addr()
	}
	var d net.Dialer
	viaProxy := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if p, ok := via[addr]; ok {
			addr = p
		}
		return d.DialContext(ctx, network, addr)
	}
	degraded := func(m probe.Module) (probe.Prober, error) { return probe.New(m, probe.WithDialer(viaProxy)) }

	n1 := startNode(t, "node-1", "a", nodeOpts{endpoint: etcd.Endpoint(), cfg: cfg, newProber: degraded})
	n2 := startNode(t, "node-2", "b", nodeOpts{endpoint: etcd.Endpoint(), cfg: cfg})
	n3 := startNode(t, "node-3", "c", nodeOpts{endpoint: etcd.Endpoint(), cfg: cfg})
	nodes := []*testNode{n1, n2, n3}
	var keys [][2]string
	for _, in := range f.active {
		keys = append(keys, [2]string{"web", in.name})
	}
	waitFor(t, 20*time.Second, "every node to see three members and every instance alive", func() bool {
		for _, n := range nodes {
			if n.node.Ring().Len() != 3 || !allAlive(n, keys) {
				return false
			}
		}
		return true
	}, func() string { return summary(n1, keys) + "\n" + summary(n2, keys) + "\n" + summary(n3, keys) })
	var zoneB []string // node-1's live instances in zone b
	for _, in := range f.active {
		if in.zone == "b" && in.name != dead && n1.node.Owner("web", in.name) == "node-1" {
			zoneB = append(zoneB, in.name)
		}
	}
	if len(zoneB) == 0 {
		t.Fatal("node-1 owns no zone b instance; the test proves nothing")
	}

	// node-1's link to zone b degrades: 1.5s each way, past the 500ms
	// probe timeout.
	for _, p := range proxies {
		if err := p.Latency(toxi.Downstream, 1500, 0); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 15*time.Second, "node-1's zone b instances to be suspect, unconfirmed by the other zones", func() bool {
		for _, name := range zoneB {
			v := n1.state("web", name)
			if v.State.String() != "suspect" || !strings.Contains(v.Reason, "unconfirmed from other zones") {
				return false
			}
		}
		return true
	}, func() string {
		var b strings.Builder
		for _, name := range zoneB {
			v := n1.state("web", name)
			fmt.Fprintf(&b, "%s: %s %q\n", name, v.State, v.Reason)
		}
		return b.String()
	})
	v := n1.state("web", zoneB[0])
	for _, want := range []string{"zone b (node-2): healthy", "zone c (node-3): healthy"} {
		if !strings.Contains(v.Reason, want) {
			t.Errorf("reason %q does not say %q", v.Reason, want)
		}
	}
	// The other nodes mirror node-1's verdict: suspect, not down.
	if m := n2.state("web", zoneB[0]); m.State.String() != "suspect" || m.Source != "peer" {
		t.Errorf("node-2 mirrors %s as %s from %s", zoneB[0], m.State, m.Source)
	}

	// Meanwhile two targets really die. node-1 cannot tell the zone b one
	// from its bad link, but the other zones see the refusals and agree.
	killDead()
	killDeadC()
	killed := time.Now()
	bound := 2*time.Second + 2*time.Second + (500*time.Millisecond + 2*time.Second) + time.Second
	took := map[string]time.Duration{}
	waitFor(t, bound+5*time.Second, "both dead instances to be down", func() bool {
		for _, name := range []string{dead, deadC} {
			if _, ok := took[name]; !ok && n1.state("web", name).State.String() == "down" {
				took[name] = time.Since(killed)
			}
		}
		return len(took) == 2
	}, func() string { return summary(n1, keys) })
	for _, name := range []string{dead, deadC} {
		dv := n1.state("web", name)
		t.Logf("%s down after %s (bound %s): %s", name, took[name].Round(10*time.Millisecond), bound, dv.Reason)
		if took[name] > bound {
			t.Errorf("%s took %s to be declared down, bound %s", name, took[name], bound)
		}
		if !strings.Contains(dv.Reason, "confirmed by other zones") || !strings.Contains(dv.Reason, "refused") {
			t.Errorf("down reason %q does not carry the other zones' agreement", dv.Reason)
		}
	}
	time.Sleep(3 * time.Second)

	// Nothing else went down, on any node, all along; every node sees the
	// dead ones down.
	for _, n := range nodes {
		for _, e := range n.eventsTo("down") {
			if e.Instance != dead && e.Instance != deadC {
				t.Errorf("%s: %s/%s went down: %s", n.id, e.Service, e.Instance, e.Reason)
			}
		}
		for _, name := range []string{dead, deadC} {
			if m := n.state("web", name); m.State.String() != "down" {
				t.Errorf("%s sees %s as %s", n.id, name, m.State)
			}
		}
	}
	s := n1.node.Stats()
	if s.ConfirmDisagreed == 0 || s.ConfirmAgreed == 0 {
		t.Errorf("node-1 confirmations: %d disagreed, %d agreed; want both", s.ConfirmDisagreed, s.ConfirmAgreed)
	}
	t.Logf("node-1 confirmations: asked %d, agreed %d, disagreed %d; node-2 served %d, node-3 served %d",
		s.ConfirmAsked, s.ConfirmAgreed, s.ConfirmDisagreed, n2.node.Stats().ConfirmServed, n3.node.Stats().ConfirmServed)
}
