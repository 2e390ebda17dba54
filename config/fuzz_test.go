package config

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse: the loader never panics, and every rejection is a FieldError
// naming the file (so an operator always gets a file:line message).
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../examples/pulse.yaml"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"", "services: []", "services:\n  - name: a\n    passive: {interval: 30}\n",
		"profile: wan\nservices:\n  - name: x\n    passive: {interval: 1s, tokens: [{value: 0123456789abcdef}]}\n",
		"modules:\n  m: {kind: http, conditions: {healthy: ['json.code == 0 &&']}}\n",
		"a: &x [*x]\n", "services:\n  - <<: {name: a}\n", "\t\x00", "listen: {http: ':'}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			fes := FieldErrors(err)
			if len(fes) == 0 {
				t.Fatalf("error without a FieldError: %v", err)
			}
			for _, fe := range fes {
				if fe.File != "fuzz.yaml" || !strings.HasPrefix(fe.Error(), "fuzz.yaml") {
					t.Fatalf("error does not name the file: %v", fe)
				}
			}
			return
		}
		if c == nil || c.Hash == "" {
			t.Fatal("nil config or no hash without an error")
		}
	})
}
