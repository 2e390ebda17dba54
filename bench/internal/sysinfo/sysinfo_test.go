package sysinfo

import (
	"os"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDescribe(t *testing.T) {
	m := Describe()
	if m.NProc < 1 || m.GoVersion != runtime.Version() || m.MemTotal <= 0 {
		t.Fatalf("implausible machine: %+v", m)
	}
}

func TestProcCPUAndRSS(t *testing.T) {
	before, err := ProcCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	self0 := SelfCPU()
	// Burn CPU until the kernel's 10 ms accounting shows it.
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
		if now, _ := ProcCPU(os.Getpid()); now-before >= 50*time.Millisecond {
			break
		}
	}
	after, err := ProcCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 50*time.Millisecond {
		t.Fatalf("ProcCPU grew by %v after burning CPU (x=%d)", after-before, x)
	}
	if d := SelfCPU() - self0; d < 40*time.Millisecond {
		t.Fatalf("SelfCPU grew by %v only", d)
	}
	rss, err := ProcRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Fatalf("ProcRSS = %d, %v", rss, err)
	}
	if _, err := ProcCPU(1 << 30); err == nil {
		t.Fatal("ProcCPU of a missing process succeeded")
	}
}
