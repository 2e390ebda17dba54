package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func exampleEnv(t *testing.T) {
	t.Setenv("PULSE_API_TOKEN", "api-token-0123456789abcdef")
	t.Setenv("PULSE_CHECKOUT_KEY", "checkout-key-0123456789abcdef")
	t.Setenv("PULSE_SEARCH_TOKEN", "search-token-0123456789abcdef")
}

func TestExampleLoads(t *testing.T) {
	exampleEnv(t)
	c, err := Load("../examples/pulse.yaml")
	if err != nil {
		t.Fatalf("examples/pulse.yaml does not load:\n%v", err)
	}
	if len(c.Spec.Services) != 2 {
		t.Fatalf("services: %+v", c.Spec.Services)
	}
	co := c.Spec.Services[0]
	if co.Name != "checkout" || co.Passive.Interval != time.Second || len(co.Passive.Keys[1]) == 0 ||
		len(co.Active) != 1 || co.Active[0].Interval != 5*time.Second || co.Active[0].Timeout != 2*time.Second ||
		co.Protection.SuspectShare != 0.3 || co.Protection.MaxEjection != 0.5 || co.Verdict.RecoverAfter != 3 {
		t.Fatalf("checkout spec: %+v", co)
	}
	if !c.Spec.Services[1].RegisterByBeats || c.Spec.Services[1].Passive.Interval != 2*time.Second {
		t.Fatalf("search spec: %+v", c.Spec.Services[1])
	}
	if c.Hash == "" || c.Spec.Hash != c.Hash || len(c.APITokens) != 1 {
		t.Fatalf("hash/tokens: %q %d", c.Hash, len(c.APITokens))
	}
}

func TestDefaults(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen.HTTP != "127.0.0.1:7700" || c.Listen.GRPC != "127.0.0.1:7701" || c.Listen.UDP != "127.0.0.1:7702" || c.DataDir != "./pulse-data" || c.Profile != "lan" {
		t.Fatalf("defaults: %+v", c)
	}
}

// errorsOf parses src and returns its field errors as "line: field: msg".
func errorsOf(t *testing.T, src string) []*FieldError {
	t.Helper()
	_, err := Parse("pulse.yaml", []byte(src))
	if err == nil {
		t.Fatalf("config accepted:\n%s", src)
	}
	fes := FieldErrors(err)
	if len(fes) == 0 {
		t.Fatalf("error is not a FieldError: %v", err)
	}
	return fes
}

func has(fes []*FieldError, line int, field, msg string) bool {
	for _, e := range fes {
		if e.Line == line && e.Field == field && strings.Contains(e.Msg, msg) {
			return true
		}
	}
	return false
}

// AP-10: a duration without a unit is rejected with the line and a message
// that says what to write.
func TestDurationNeedsUnit(t *testing.T) {
	src := `services:
  - name: checkout
    passive:
      interval: 30
      tokens: [{value: 0123456789abcdef}]
`
	fes := errorsOf(t, src)
	if !has(fes, 4, "services[0].passive.interval", `duration "30" needs a unit, e.g. 30s`) {
		t.Fatalf("got %v", fes)
	}
	if got := fes[0].Error(); got != `pulse.yaml:4: services[0].passive.interval: duration "30" needs a unit, e.g. 30s or 30ms` {
		t.Fatalf("message: %s", got)
	}
	// Inside a probe module (a time.Duration decoded by yaml.v3) too.
	src = `modules:
  m:
    kind: tcp
    timeout: 2
`
	if fes := errorsOf(t, src); !has(fes, 4, "modules.m.timeout", `duration "2" needs a unit`) {
		t.Fatalf("module duration: %v", fes)
	}
}

func TestUnknownFieldNamedWithLine(t *testing.T) {
	src := `services:
  - name: checkout
    pasive:
      interval: 1s
`
	fes := errorsOf(t, src)
	if !has(fes, 3, "services[0].pasive", `unknown field "pasive"`) {
		t.Fatalf("got %v", fes)
	}
}

func TestAllErrorsAtOnce(t *testing.T) {
	src := `profile: moon
listen:
  http: localhost
services:
  - name: a
    passive:
      interval: 2h
      jitter: 10s
  - name: a
    passive: {interval: 1s, tokens: [{value: 0123456789abcdef}]}
  - name: "bad name"
    active:
      - module: missing
`
	fes := errorsOf(t, src)
	for _, w := range []struct {
		line        int
		field, text string
	}{
		{1, "profile", `unknown profile "moon"`},
		{3, "listen.http", "is not host:port"},
		{7, "services[0].passive.interval", "2h0m0s is outside 100ms..1h0m0s"},
		{6, "services[0].passive", "beats would all be refused"},
		{9, "services[1].name", `service "a" is declared twice`},
		{11, "services[2].name", "not a valid service name"},
		{13, "services[2].active[0].module", `no module named "missing"`},
	} {
		if !has(fes, w.line, w.field, w.text) {
			t.Errorf("missing %d %s %q in:\n%v", w.line, w.field, w.text, errors.Join(asErrs(fes)...))
		}
	}
}

func asErrs(fes []*FieldError) []error {
	out := make([]error, len(fes))
	for i, f := range fes {
		out[i] = f
	}
	return out
}

func TestCELErrorPointsAtColumn(t *testing.T) {
	src := `modules:
  m:
    kind: http
    conditions:
      healthy:
        - status == 200 && json.code ==
`
	fes := errorsOf(t, src)
	if len(fes) != 1 || !strings.Contains(fes[0].Field, "modules.m.conditions.healthy[0]") || fes[0].Line != 6 || !strings.Contains(fes[0].Msg, "column") {
		t.Fatalf("got %v", fes)
	}
}

func TestSecrets(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte("0123456789abcdef0123\n"), 0o600)
	src := `services:
  - name: s
    passive:
      keys:
        - {id: 1, secret: {file: ` + keyFile + `}}
        - {id: 2, secret: {value: short}}
        - {id: 3, secret: {env: PULSE_TEST_UNSET_VAR}}
        - {id: 4, secret: {value: 0123456789abcdef, env: X}}
`
	fes := errorsOf(t, src)
	if !has(fes, 6, "services[0].passive.keys[1].secret", "use at least 16 random bytes") ||
		!has(fes, 7, "services[0].passive.keys[2].secret.env", "PULSE_TEST_UNSET_VAR is not set") ||
		!has(fes, 8, "services[0].passive.keys[3].secret", "exactly one of value, file or env") || len(fes) != 3 {
		t.Fatalf("got %v", fes)
	}
}

func TestSyntaxError(t *testing.T) {
	_, err := Parse("pulse.yaml", []byte("services:\n  - name: [unclosed\n"))
	fes := FieldErrors(err)
	if len(fes) != 1 || fes[0].Line == 0 || !strings.Contains(fes[0].Msg, "YAML syntax") {
		t.Fatalf("got %v", err)
	}
}

func TestWANPreset(t *testing.T) {
	c, err := Parse("p.yaml", []byte("profile: wan\nservices:\n  - name: s\n    passive: {tokens: [{value: 0123456789abcdef}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Spec.Services[0]
	if s.Passive.Interval != 5*time.Second || s.Verdict.DownAfter != 10*time.Second {
		t.Fatalf("wan: %+v", s)
	}
}

// Zero is a value: retries: 0 turns retries off; a service's own
// protection section does not undo disabled: true from defaults.
func TestZeroAndInheritedFlags(t *testing.T) {
	c, err := Parse("p.yaml", []byte(`defaults:
  protection: {disabled: true}
services:
  - name: s
    passive: {tokens: [{value: 0123456789abcdef}]}
    verdict: {retries: 0}
    protection: {max_ejection: 20%}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Spec.Services[0]
	if s.Verdict.Retries != 0 || !s.Protection.Disabled || s.Protection.MaxEjection != 0.2 {
		t.Fatalf("retries %d disabled %v max %v", s.Verdict.Retries, s.Protection.Disabled, s.Protection.MaxEjection)
	}
}
