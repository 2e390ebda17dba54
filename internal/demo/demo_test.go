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
