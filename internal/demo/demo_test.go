package demo

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// `pulse demo --duration 30s`: the whole script runs against real sockets;
// the scorecard shows no false down and every crash detected.
func TestDemoThirtySeconds(t *testing.T) {
	out := &syncBuf{}
	card, err := Run(context.Background(), Options{HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0",
		Duration: 30 * time.Second, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	text := out.b.String()
	if len(card.Faults) != 6 {
		t.Errorf("faults injected: %v", card.Faults)
	}
	if len(card.Crashed) != 3 || len(card.Detected) != 3 {
		t.Errorf("crashes %v, detected %v", card.Crashed, card.Detected)
	}
	if len(card.FalseDowns) != 0 {
		t.Errorf("false downs: %v", card.FalseDowns)
	}
	if card.DegradedSeen < card.DegradedWanted || card.Protections == 0 {
		t.Errorf("degraded %d of %d, protections %d", card.DegradedSeen, card.DegradedWanted, card.Protections)
	}
	for _, want := range []string{"dashboard: http://", "false downs: 0", "crashes detected: 3 of 3"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}

// `pulse demo --cluster 3` (a smaller fleet): three nodes on an embedded
// etcd judge the fleet through the script; the last node crashes and its
// instances are taken over, with no false down and every crash detected.
// (The strict takeover bound, lease TTL + one interval, is asserted by
// cluster's TestFailover; here three nodes and the fault script share two
// cores, so the bound is TTL + 2s.)
func TestDemoCluster(t *testing.T) {
	out := &syncBuf{}
	card, err := Run(context.Background(), Options{HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0",
		Duration: 30 * time.Second, Out: out, Cluster: 3, PerZonePassive: 10, PerZoneHTTP: 4})
	if err != nil {
		t.Fatal(err)
	}
	text := out.b.String()
	if card.Killed != "node-3" || card.Takeover == 0 || card.Takeover > clusterTTL+2*time.Second {
		t.Errorf("killed %q, takeover after %s (want within %s)", card.Killed, card.Takeover, clusterTTL+2*time.Second)
	}
	if len(card.FalseDowns) != 0 || len(card.Detected) != len(card.Crashed) || len(card.Crashed) != 3 || !card.OK() {
		t.Errorf("false downs %v, crashes %v, detected %v", card.FalseDowns, card.Crashed, card.Detected)
	}
	for _, want := range []string{"cluster: 3 nodes on an embedded etcd", "TAKEOVER node-3's", "(pushed to etcd)", "false downs: 0"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}
