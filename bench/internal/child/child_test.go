package child

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The test binary doubles as the child: TestMain runs a role when the
// environment names one, as the report does.
func TestMain(m *testing.M) {
	if isChild, code := Main(map[string]Role{
		"echo": echoRole,
		"fail": func(context.Context, *Conn) (any, error) { return nil, errors.New("the role failed on purpose") },
		"panic": func(context.Context, *Conn) (any, error) {
			panic("boom")
		},
	}); isChild {
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}

type echoIn struct{ Add int }

// echoRole answers every command with the command plus Add, and reports
// the number of commands as its result once stdin closes.
func echoRole(ctx context.Context, c *Conn) (any, error) {
	var in echoIn
	if err := c.Input(&in); err != nil {
		return nil, err
	}
	c.Progress("started with %d", in.Add)
	n := 0
	for raw := range c.Commands() {
		var v int
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		n++
		if err := c.Send(v + in.Add); err != nil {
			return nil, err
		}
	}
	if ctx.Err() == nil {
		return nil, errors.New("context not cancelled when stdin closed")
	}
	return map[string]int{"commands": n}, nil
}

func TestRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	var lines []string
	p, err := Start(ctx, "echo", "echo", echoIn{Add: 40}, "", func(s string) { mu.Lock(); lines = append(lines, s); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []int{1, 2} {
		if err := p.Send(v); err != nil {
			t.Fatal(err)
		}
		var got int
		if err := p.Next(ctx, &got); err != nil {
			t.Fatal(err)
		}
		if got != v+40 {
			t.Fatalf("child answered %d to %d", got, v)
		}
	}
	p.CloseInput()
	var res map[string]int
	if err := p.Result(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if res["commands"] != 2 {
		t.Fatalf("result %v, want 2 commands", res)
	}
	<-p.Done()
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 1 || lines[0] != "started with 40" {
		t.Fatalf("progress lines %q", lines)
	}
	if err := p.Send(3); err == nil {
		t.Fatal("Send after CloseInput succeeded")
	}
}

func TestFailuresReachTheParent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for role, want := range map[string]string{"fail": "the role failed on purpose", "panic": "panic: boom", "nosuch": "exited without a result"} {
		p, err := Start(ctx, role, role, struct{}{}, os.DevNull, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = p.Result(ctx, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("role %s: error %v, want one containing %q", role, err, want)
		}
		p.Stop(time.Second)
	}
}

func TestStopKillsAChildThatIgnoresStdin(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, "echo", "echo", echoIn{}, os.DevNull, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Cancelling the parent's context kills the child.
	cancel()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("child still running 10s after its context was cancelled")
	}
}
