package incidents

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// AP-04 (INC-2024-0334, racy writes). The health flag lived in a plain
// global (`var isHealthy = true; func SetHealthy(v bool) { isHealthy = v }`)
// written and read by many goroutines; the health state came out garbled.
//
// Replay: concurrent writers and readers under -race. testdata/ap04state
// runs the same workload (4 writers and 4 readers, 20,000 operations each)
// through pulse (-mode pulse: health.Set against Snapshot and the /readyz
// handler, and the monitor's ObserveBatch against its Instances and Counts
// views while it judges) or through the seed's global (-mode seed). The
// test builds it with -race, so the race detector judges it whether or not
// the suite itself runs with -race.
//
// Pass criterion (pulse): exit status 0, no "DATA RACE" report, and every
// read consistent: a snapshot's sequence number never goes back, Ready
// agrees with the check's status, an error is present exactly when the
// check is unhealthy and is a writer's whole error; an instance's beat
// count never goes back and the per-state counts add up to the fleet.

func ap04Build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ap04state")
	out, err := exec.Command("go", "build", "-race", "-o", bin, "./testdata/ap04state").CombinedOutput()
	if err != nil {
		t.Fatalf("go build -race ./testdata/ap04state: %v\n%s", err, out)
	}
	return bin
}

// ap04Run runs the workload; it returns stdout, stderr and the exit code.
func ap04Run(t *testing.T, bin, mode string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "-mode", mode)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s -mode %s: %v", bin, mode, err)
	}
	return stdout.String(), stderr.String(), code
}

func TestAP04AtomicState(t *testing.T) {
	bin := ap04Build(t)
	stdout, stderr, code := ap04Run(t, bin, "pulse")
	var reads, bad int64
	if _, err := fmt.Sscanf(strings.TrimSpace(stdout), "mode=pulse reads=%d inconsistent=%d", &reads, &bad); err != nil {
		t.Fatalf("unexpected output %q (%v); stderr:\n%s", stdout, err, stderr)
	}
	t.Logf("pulse: exit %d, %d reads, %d inconsistent, race reports: %d", code, reads, bad, strings.Count(stderr, "WARNING: DATA RACE"))
	if code != 0 || strings.Contains(stderr, "DATA RACE") {
		t.Fatalf("pulse's state is racy (exit %d):\n%s", code, stderr)
	}
	if want := int64(4*20000 + 4*20000/8); reads != want {
		t.Errorf("%d reads, want %d", reads, want)
	}
	if bad != 0 {
		t.Errorf("%d inconsistent reads, want 0", bad)
	}
}

// TestAP04Naive runs the seed's global bool through the same workload
// under the race detector, which must flag it: exit status 66 (the race
// detector's) and a DATA RACE report naming SetHealthy.
func TestAP04Naive(t *testing.T) {
	bin := ap04Build(t)
	stdout, stderr, code := ap04Run(t, bin, "seed")
	races := strings.Count(stderr, "WARNING: DATA RACE")
	t.Logf("seed: exit %d, %d race reports; output %q", code, races, strings.TrimSpace(stdout))
	if code != 66 || races == 0 || !strings.Contains(stderr, "main.SetHealthy") {
		t.Fatalf("the race detector did not flag the seed's global bool (exit %d, %d reports):\n%s", code, races, stderr)
	}
}
