package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestConfigCheck(t *testing.T) {
	t.Setenv("PULSE_API_TOKEN", "api-token-0123456789abcdef")
	t.Setenv("PULSE_CHECKOUT_KEY", "checkout-key-0123456789abcdef")
	t.Setenv("PULSE_SEARCH_TOKEN", "search-token-0123456789abcdef")
	code, out, errOut := runCLI(t, "config", "check", "../../examples/pulse.yaml")
	if code != 0 || !strings.Contains(out, "examples/pulse.yaml: ok (profile lan, 2 services") {
		t.Fatalf("example: exit %d\n%s%s", code, out, errOut)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "pulse.yaml")
	os.WriteFile(bad, []byte("services:\n  - name: api\n    passive:\n      interval: 30\n      tokens: [{value: 0123456789abcdef}]\n    zone_labels: {}\n"), 0o644)
	code, _, errOut = runCLI(t, "config", "check", bad)
	if code != 1 {
		t.Fatalf("bad file: exit %d, want 1\n%s", code, errOut)
	}
	for _, want := range []string{
		bad + `:4: services[0].passive.interval: duration "30" needs a unit, e.g. 30s`,
		bad + `:6: services[0].zone_labels: unknown field "zone_labels"`,
		"2 problem(s); nothing was applied",
	} {
		if !strings.Contains(errOut, want) {
			t.Fatalf("missing %q in:\n%s", want, errOut)
		}
	}
	if code, _, errOut := runCLI(t, "config", "check", filepath.Join(dir, "missing.yaml")); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Fatalf("missing file: %d %s", code, errOut)
	}
}
