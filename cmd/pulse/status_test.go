package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

func TestStatusCommand(t *testing.T) {
	c, err := config.Parse("t.yaml", []byte(`services:
  - name: fleet
    register_by_beats: true
    passive: {interval: 1s, tokens: [{value: 0123456789abcdef}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(daemon.Options{Config: c, InMemory: true, HTTPAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", UDPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-d.Ready()
	for _, name := range []string{"a1", "a2", "b1"} {
		st := status.Healthy
		if name == "b1" {
			st = status.Degraded
		}
		d.Monitor().ObserveBatch([]ingest.Observation{{Service: "fleet", Instance: name, Epoch: 1, Seq: 1,
			ReceivedAt: time.Now(), Status: st, Transport: wire.UDP, Reason: wire.ReasonOverloaded}})
	}
	addr := "--addr=http://" + d.HTTPAddr()
	code, out, errOut := runCLI(t, "status", addr)
	if code != 0 || !strings.Contains(out, "SERVICE") || !regexpLine(out, "fleet", "3", "2", "1") {
		t.Fatalf("status: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "status", "fleet", addr)
	if code != 0 || !strings.Contains(out, "b1") || !strings.Contains(out, "degraded") || !strings.Contains(out, "overloaded") || !strings.Contains(out, "3 instance(s)") {
		t.Fatalf("status fleet: %d\n%s", code, out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Fatal("colour codes written to a pipe")
	}
	code, out, _ = runCLI(t, "status", "fleet", "--state=degraded", "--json", addr)
	var l struct {
		Total int `json:"total"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &l) != nil || l.Total != 1 {
		t.Fatalf("status --json --state: %d %s", code, out)
	}
	if code, _, errOut := runCLI(t, "status", "nope", addr); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("unknown service: %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "status", "--addr=http://127.0.0.1:1"); code != 2 || !strings.Contains(errOut, "is `pulse serve` running?") {
		t.Fatalf("unreachable monitor: %d %s", code, errOut)
	}
}

// regexpLine reports whether some line starts with fields in order.
func regexpLine(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(fields) {
			ok := true
			for i := range fields {
				ok = ok && f[i] == fields[i]
			}
			if ok {
				return true
			}
		}
	}
	return false
}
