package config

import (
	"strings"
	"testing"
	"time"
)

func TestClusterSection(t *testing.T) {
	t.Setenv("PULSE_CLUSTER_TOKEN", "cluster-token-0123456789")
	c, err := Parse("c.yaml", []byte(`cluster:
  endpoints: [http://etcd1:2379, https://etcd2:2379]
  node_id: pulse-1
  zone: eu-west-1a
  advertise: 10.0.0.5:7701
  lease_ttl: 15s
  confirm_quorum: 2
  token: {env: PULSE_CLUSTER_TOKEN}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := ClusterConfig{Endpoints: []string{"http://etcd1:2379", "https://etcd2:2379"}, NodeID: "pulse-1", Zone: "eu-west-1a",
		Advertise: "10.0.0.5:7701", LeaseTTL: 15 * time.Second, ConfirmQuorum: 2, Token: []byte("cluster-token-0123456789")}
	got := c.Cluster
	if got == nil || strings.Join(got.Endpoints, ",") != strings.Join(want.Endpoints, ",") || got.NodeID != want.NodeID ||
		got.Zone != want.Zone || got.Advertise != want.Advertise || got.LeaseTTL != want.LeaseTTL ||
		got.ConfirmQuorum != want.ConfirmQuorum || string(got.Token) != string(want.Token) {
		t.Fatalf("cluster section: %+v, want %+v", got, want)
	}
	if c, err := Parse("none.yaml", nil); err != nil || c.Cluster != nil {
		t.Fatalf("no section: %+v %v", c.Cluster, err)
	}

	_, err = Parse("bad.yaml", []byte(`cluster:
  endpoints: ["etcd:2379"]
  node_id: "a/b"
  advertise: 0.0.0.0:7701
  lease_ttl: 1s
  token: {value: short}
  etcd: {cert_file: /nonexistent}
`))
	fes := FieldErrors(err)
	want2 := []string{"cluster.endpoints[0]", "cluster.node_id", "cluster.advertise", "cluster.lease_ttl", "cluster.token", "cluster.etcd", "cluster.etcd.cert_file"}
	if len(fes) != len(want2) {
		t.Fatalf("%d errors, want %d: %v", len(fes), len(want2), err)
	}
	lines := []int{2, 3, 4, 5, 6, 7, 7}
	for i, fe := range fes {
		if fe.Field != want2[i] || fe.Line != lines[i] {
			t.Errorf("error %d: %s (line %d), want field %s at line %d", i, fe.Field, fe.Line, want2[i], lines[i])
		}
	}
	if _, err := Parse("ttl.yaml", []byte("cluster: {lease_ttl: 10}\n")); err == nil || !strings.Contains(err.Error(), "needs a unit") {
		t.Errorf("lease_ttl without a unit: %v", err)
	}
}
