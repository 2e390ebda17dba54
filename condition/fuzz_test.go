package condition

import (
	"context"
	"testing"
	"time"
)

// FuzzCompile: compiling any expression never panics; a compiled one
// evaluates without panicking, within the cost limit, on JSON and non-JSON
// bodies alike.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		"status == 200 && json.code == 0", `json.status == "UP"`, `latency < duration("300ms")`,
		"json.code ==", "[1,2,3].map(x, [1,2,3].map(y, x*y)).size() > 0", `headers["content-type"][0] == "x"`,
		`tls.not_after > now`, "body.size() > 0", "json.a.b.c[0] == 1", "(", "\x00", `"` + "\\u",
	} {
		f.Add(s, []byte(`{"code":0,"status":"UP","a":{"b":{"c":[1]}}}`))
		f.Add(s, []byte("not json"))
	}
	f.Fuzz(func(t *testing.T, expr string, body []byte) {
		set, err := Compile(Spec{Healthy: []string{expr}})
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v := set.Eval(ctx, &Input{Status: 200, Body: body, Headers: map[string][]string{"Content-Type": {"application/json"}}, Latency: time.Millisecond})
		if !v.Status.Valid() {
			t.Fatalf("invalid status %v", v.Status)
		}
	})
}
