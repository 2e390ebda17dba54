package condition

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fb4b1dcc/pulse/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustCompile(t *testing.T, spec Spec, opts ...Option) *Set {
	t.Helper()
	s, err := Compile(spec, opts...)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return s
}

// businessSpec is the AP-08 module: HTTP 200 with code 0 is healthy; code
// 503 is degraded with the body's message as reason.
var businessSpec = Spec{
	Healthy:  []string{"status == 200 && json.code == 0"},
	Degraded: []Rule{{When: "json.code == 503", Reason: "json.msg"}},
}

func TestBusinessVerdicts(t *testing.T) {
	s := mustCompile(t, businessSpec)
	cases := []struct {
		name   string
		status int
		body   string
		want   status.Status
		class  status.ErrorClass
		reason string
	}{
		{"code 0", 200, `{"code":0}`, status.Healthy, "", ""},
		{"code 503", 200, `{"code":503,"msg":"service degraded"}`, status.Degraded, status.ClassCondition, "service degraded"},
		{"code 1", 200, `{"code":1,"msg":"db down"}`, status.Unhealthy, status.ClassCondition,
			"condition status == 200 && json.code == 0 failed: status=200 code=1"},
		{"http 500", 500, `{"code":0}`, status.Unhealthy, status.ClassCondition,
			"condition status == 200 && json.code == 0 failed: status=500 code=0"},
		{"float code", 200, `{"code":0.0}`, status.Healthy, "", ""},
		{"missing field", 200, `{"state":"UP"}`, status.Unhealthy, status.ClassCondition,
			"condition status == 200 && json.code == 0: no such key: code"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := s.Eval(context.Background(), &Input{Status: c.status, Body: []byte(c.body)})
			if v.Status != c.want || v.Class != c.class || v.Reason != c.reason {
				t.Fatalf("got %v/%q/%q, want %v/%q/%q", v.Status, v.Class, v.Reason, c.want, c.class, c.reason)
			}
			if (v.Err != nil) != (c.want == status.Unhealthy) {
				t.Fatalf("Err = %v for status %v", v.Err, v.Status)
			}
		})
	}
}

func TestNotJSONBody(t *testing.T) {
	s := mustCompile(t, businessSpec)
	for _, body := range []string{"<html>502 Bad Gateway</html>", "", `{"code":0} trailing`, `{"code":`} {
		v := s.Eval(context.Background(), &Input{Status: 200, Body: []byte(body)})
		if v.Status != status.Unhealthy || v.Class != status.ClassProtocol {
			t.Fatalf("body %q: got %v/%q want unhealthy/protocol", body, v.Status, v.Class)
		}
		if !strings.Contains(v.Reason, "needs a JSON body") || status.Classify(v.Err) != status.ClassProtocol {
			t.Fatalf("body %q: reason %q err %v", body, v.Reason, v.Err)
		}
	}
	v := s.Eval(context.Background(), &Input{Status: 200, Body: []byte(`{"code":0`), BodyTruncated: true})
	if v.Status != status.Unhealthy || !strings.Contains(v.Reason, "read limit") {
		t.Fatalf("truncated: %v %q", v.Status, v.Reason)
	}
	// A body-only condition does not care whether the body is JSON.
	raw := mustCompile(t, Spec{Healthy: []string{`body.contains("OK")`}})
	if v := raw.Eval(context.Background(), &Input{Body: []byte("all OK")}); v.Status != status.Healthy {
		t.Fatalf("raw body: %v %q", v.Status, v.Reason)
	}
}

func TestVariables(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	in := &Input{
		Status:  204,
		Headers: map[string][]string{"Content-Type": {"application/json"}, "X-Version": {"1", "2"}},
		Body:    []byte(`{"status":"UP","checks":[{"ok":true},{"ok":true}],"ratio":0.75}`),
		Latency: 120 * time.Millisecond,
		TLS:     &TLS{NotAfter: now.Add(30 * 24 * time.Hour), Subject: "CN=svc"},
		Now:     now,
	}
	ok := []string{
		`status == 204`,
		`headers["content-type"] == "application/json"`,
		`headers["x-version"] == "1, 2"`,
		`json.status == "UP"`,
		`json.checks.all(c, c.ok)`,
		`json.ratio > 0.5 && json.ratio < 1`,
		`latency < duration("300ms")`,
		`tls.not_after - now > duration("240h")`,
		`tls.subject == "CN=svc"`,
		`body.startsWith("{")`,
		`json.status.lowerAscii() == "up"`,
	}
	for _, e := range ok {
		s := mustCompile(t, Spec{Healthy: []string{e}})
		if v := s.Eval(context.Background(), in); v.Status != status.Healthy {
			t.Errorf("%s: got %v %q", e, v.Status, v.Reason)
		}
	}
	bad := map[string]string{
		`latency < duration("100ms")`:            "condition latency < duration(\"100ms\") failed: latency=120ms",
		`tls.not_after - now > duration("800h")`: "condition tls.not_after - now > duration(\"800h\") failed: tls.not_after=2026-03-31T12:00:00Z now=2026-03-01T12:00:00Z",
		`headers["x-version"] == "3"`:            "condition headers[\"x-version\"] == \"3\" failed: headers.x-version=\"1, 2\"",
	}
	for e, want := range bad {
		s := mustCompile(t, Spec{Healthy: []string{e}})
		if v := s.Eval(context.Background(), in); v.Status != status.Unhealthy || v.Reason != want {
			t.Errorf("%s: got %v %q want %q", e, v.Status, v.Reason, want)
		}
	}
}

func TestDegradedWhileHealthy(t *testing.T) {
	s := mustCompile(t, Spec{
		Healthy:  []string{"status == 200"},
		Degraded: []Rule{{When: `status == 200 && latency > duration("300ms")`}},
	})
	if v := s.Eval(context.Background(), &Input{Status: 200, Latency: 400 * time.Millisecond}); v.Status != status.Degraded ||
		v.Reason != `degraded: status == 200 && latency > duration("300ms")` {
		t.Fatalf("slow: %v %q", v.Status, v.Reason)
	}
	if v := s.Eval(context.Background(), &Input{Status: 500, Latency: 400 * time.Millisecond}); v.Status != status.Unhealthy {
		t.Fatalf("slow 500: %v %q", v.Status, v.Reason)
	}
	if v := s.Eval(context.Background(), &Input{Status: 200, Latency: 10 * time.Millisecond}); v.Status != status.Healthy {
		t.Fatalf("fast: %v %q", v.Status, v.Reason)
	}
}

func TestDefaultHealthy(t *testing.T) {
	s := mustCompile(t, Spec{}, WithDefaultHealthy("status >= 200 && status < 300"))
	if v := s.Eval(context.Background(), &Input{Status: 503}); v.Status != status.Unhealthy ||
		v.Reason != "condition status >= 200 && status < 300 failed: status=503" {
		t.Fatalf("%v %q", v.Status, v.Reason)
	}
	if s.UsesBody() {
		t.Fatal("a status-only set must not ask for the body")
	}
	if !mustCompile(t, businessSpec).UsesJSON() {
		t.Fatal("business spec reads json")
	}
}

// TestCompileErrors: every class of bad expression fails at load, with the
// column of the problem.
func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name  string
		spec  Spec
		field string
		col   int
		msg   string
	}{
		{"syntax", Spec{Healthy: []string{"status == 200 &&"}}, "healthy[0]", 17, "Syntax error"},
		{"unknown variable", Spec{Healthy: []string{"statuss == 200"}}, "healthy[0]", 1, "undeclared reference to 'statuss'"},
		{"unknown field", Spec{Healthy: []string{"status == 200", `tls.not_afterr > now`}}, "healthy[1]", 4, "undefined field 'not_afterr'"},
		{"wrong type", Spec{Healthy: []string{`status == "200"`}}, "healthy[0]", 8, "no matching overload"},
		{"not bool", Spec{Healthy: []string{`status + 1`}}, "healthy[0]", 1, "must be a bool expression"},
		{"degraded", Spec{Degraded: []Rule{{When: `latency > 300`}}}, "degraded[0].when", 9, "no matching overload"},
		{"reason type", Spec{Degraded: []Rule{{When: `status == 503`, Reason: `status`}}}, "degraded[0].reason", 1, "must be a string"},
		{"empty", Spec{Healthy: []string{"  "}}, "healthy[0]", 1, "empty expression"},
		{"expect", Spec{Expect: &Expect{Status: 20}}, "expect.status", 1, "three digits"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(c.spec)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *Error, got %v", err)
			}
			if ce.Field != c.field || ce.Column != c.col || ce.Line != 1 || !strings.Contains(ce.Msg, c.msg) {
				t.Fatalf("got %s line %d col %d %q; want %s col %d %q", ce.Field, ce.Line, ce.Column, ce.Msg, c.field, c.col, c.msg)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("column %d", c.col)) {
				t.Fatalf("message lacks the column: %v", err)
			}
		})
	}
	// All errors at once, and the caret under the column.
	_, err := Compile(Spec{Healthy: []string{"statuss == 1", "status == 'x'"}})
	if n := strings.Count(err.Error(), "healthy["); n != 2 {
		t.Fatalf("want both errors, got %d in %v", n, err)
	}
	if !strings.Contains(err.Error(), "  | status == 'x'\n  |        ^") {
		t.Fatalf("caret not under column 8:\n%v", err)
	}
}

// TestCostLimit: an expression that loops (nested comprehensions over the
// body) is stopped by the cost limit and judged Unhealthy, not run for
// seconds; the same expression over a small list is within the limit.
func TestCostLimit(t *testing.T) {
	s := mustCompile(t, Spec{Healthy: []string{
		"json.xs.all(a, json.xs.all(b, json.xs.all(c, a + b + c >= 0)))",
	}})
	list := func(n int) []byte {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprint(i)
		}
		return []byte(`{"xs":[` + strings.Join(parts, ",") + `]}`)
	}
	if v := s.Eval(context.Background(), &Input{Body: list(10)}); v.Status != status.Healthy {
		t.Fatalf("1,000 iterations should fit: %v %q", v.Status, v.Reason)
	}
	v := s.Eval(context.Background(), &Input{Body: list(500)}) // 125 M iterations without a limit
	if v.Status != status.Unhealthy || v.Class != status.ClassCondition || !strings.Contains(v.Reason, "cost limit (100000)") {
		t.Fatalf("got %v %q %q", v.Status, v.Class, v.Reason)
	}
	// A tighter limit stops even the small list.
	tight := mustCompile(t, Spec{Healthy: []string{"json.xs.all(a, json.xs.all(b, a + b >= 0))"}}, WithCostLimit(50))
	if v := tight.Eval(context.Background(), &Input{Body: list(10)}); !strings.Contains(v.Reason, "cost limit (50)") {
		t.Fatalf("tight: %v %q", v.Status, v.Reason)
	}
}

// TestContextCancel: evaluation honours the probe's context.
func TestContextCancel(t *testing.T) {
	s := mustCompile(t, Spec{Healthy: []string{"json.xs.all(a, json.xs.all(b, a + b >= 0))"}}, WithCostLimit(1<<40))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v := s.Eval(ctx, &Input{Body: []byte(`{"xs":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}`)})
	if v.Status != status.Unhealthy || !strings.Contains(v.Reason, "cancel") {
		t.Fatalf("got %v %q", v.Status, v.Reason)
	}
}

func TestExpectSugar(t *testing.T) {
	e := Expect{Status: 200, JSON: map[string]any{"code": 0}}
	got, err := e.CEL()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"status == 200", "json.code == 0"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("CEL() = %q want %q", got, want)
	}
	full := Expect{
		Status:       200,
		JSON:         map[string]any{"data": map[string]any{"state": "UP", "my-key": true}, "ratio": 0.5, "n": float64(3), "tags": []any{"a", 1}, "x": nil},
		Headers:      map[string]string{"Content-Type": "application/json"},
		BodyContains: `say "hi"`,
		MaxLatency:   300 * time.Millisecond,
	}
	got, err = full.CEL()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`status == 200`,
		`headers["content-type"] == "application/json"`,
		`body.contains("say \"hi\"")`,
		`json.data["my-key"] == true`,
		`json.data.state == "UP"`,
		`json.n == 3`,
		`json.ratio == 0.5`,
		`json.tags == ["a", 1]`,
		`json.x == null`,
		`latency < duration("300ms")`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("CEL() =\n%q\nwant\n%q", got, want)
	}

	// Sugar and the hand-written CEL judge, and explain, identically.
	sugar := mustCompile(t, Spec{Expect: &e})
	hand := mustCompile(t, Spec{Healthy: []string{"status == 200", "json.code == 0"}})
	for _, in := range []*Input{
		{Status: 200, Body: []byte(`{"code":0}`)},
		{Status: 200, Body: []byte(`{"code":7}`)},
		{Status: 404, Body: []byte(`{"code":0}`)},
		{Status: 200, Body: []byte(`nope`)},
	} {
		a, b := sugar.Eval(context.Background(), in), hand.Eval(context.Background(), in)
		if a.Status != b.Status || a.Reason != b.Reason || a.Class != b.Class {
			t.Fatalf("%s: sugar %v %q, CEL %v %q", in.Body, a.Status, a.Reason, b.Status, b.Reason)
		}
	}
	if !reflect.DeepEqual(sugar.Healthy(), hand.Healthy()) {
		t.Fatalf("compiled text differs: %q vs %q", sugar.Healthy(), hand.Healthy())
	}
	if _, err := (Expect{JSON: map[string]any{"x": struct{}{}}}).CEL(); err == nil || !strings.Contains(err.Error(), "expect.json.x") {
		t.Fatalf("unsupported value: %v", err)
	}
}

func TestConcurrentEval(t *testing.T) {
	s := mustCompile(t, businessSpec)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				code := (i + j) % 2 * 503
				v := s.Eval(context.Background(), &Input{Status: 200, Body: fmt.Appendf(nil, `{"code":%d,"msg":"m%d"}`, code, j)})
				want := status.Healthy
				if code == 503 {
					want = status.Degraded
				}
				if v.Status != want {
					t.Errorf("got %v want %v", v.Status, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkEval(b *testing.B) {
	s, err := Compile(businessSpec)
	if err != nil {
		b.Fatal(err)
	}
	in := &Input{Status: 200, Body: []byte(`{"code":0,"msg":"ok"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if v := s.Eval(context.Background(), in); v.Status != status.Healthy {
			b.Fatal(v.Reason)
		}
	}
}
