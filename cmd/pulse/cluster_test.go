package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fb4b1dcc/pulse/cluster"
	"github.com/fb4b1dcc/pulse/cluster/embedetcd"
	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/internal/daemon"
)

// `pulse config push`: an invalid file is refused before anything is
// written; a valid one is written and every running node reports it
// applied.
func TestConfigPush(t *testing.T) {
	etcd, err := embedetcd.Start(embedetcd.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	ep := "--cluster-endpoints=" + etcd.Endpoint()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("services:\n  - name: api\n    passive: {interval: 30, tokens: [{value: 0123456789abcdef}]}\n"), 0o644)
	code, _, errOut := runCLI(t, "config", "push", bad, ep)
	if code != 1 || !strings.Contains(errOut, `needs a unit`) || !strings.Contains(errOut, "nothing was written to etcd") {
		t.Fatalf("invalid file: exit %d\n%s", code, errOut)
	}
	cli, err := cluster.Dial([]string{etcd.Endpoint()}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if r, err := cli.Get(context.Background(), cluster.ConfigKey); err != nil || len(r.Kvs) != 0 {
		t.Fatalf("something was written: %v %v", r, err)
	}

	// A running node, then a valid push.
	c, err := config.Parse("start.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(daemon.Options{Config: c, HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0", InMemory: true,
		Cluster: &daemon.ClusterOptions{Endpoints: []string{etcd.Endpoint()}, NodeID: "node-1", LeaseTTL: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-d.Ready()

	good := filepath.Join(dir, "good.yaml")
	body := "services:\n  - name: api\n    passive: {interval: 2s, tokens: [{value: 0123456789abcdef}]}\n"
	os.WriteFile(good, []byte(body), 0o644)
	code, out, errOut := runCLI(t, "config", "push", good, ep, "--wait=10s")
	if code != 0 || !strings.Contains(out, "pushed to /pulse/v1/config (hash ") || !strings.Contains(out, "node-1: applied") {
		t.Fatalf("valid file: exit %d\n%s%s", code, out, errOut)
	}
	r, err := cli.Get(context.Background(), cluster.ConfigKey, clientv3.WithLimit(1))
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != body {
		t.Fatalf("etcd holds %v (%v)", r.Kvs, err)
	}
	if sp := d.Monitor().Spec(); len(sp.Services) != 1 || sp.Services[0].Name != "api" || sp.Services[0].Passive.Interval != 2*time.Second {
		t.Fatalf("the node runs %+v", sp.Services)
	}
	if code, _, errOut := runCLI(t, "config", "push", good); code != 2 || !strings.Contains(errOut, "--cluster-endpoints") {
		t.Fatalf("no endpoints: exit %d %s", code, errOut)
	}
}
