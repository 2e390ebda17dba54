package condition

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
)

// parseJSON decodes body into plain Go values. Integral numbers within
// ±2^53 become int64, so `json.code == 0` compares ints; other numbers stay
// float64.
func parseJSON(body []byte) (any, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errors.New("the body is empty")
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, err
	}
	return numbers(v), nil
}

func numbers(v any) any {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) <= 1<<53 {
			return int64(x)
		}
		return x
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
		return x
	}
	return v
}

// path is a chain of variable accesses such as json.data.code or
// headers["content-type"].
type path []string

func (p path) String() string {
	var b strings.Builder
	// json.code reads as "code" in a reason: the json root adds nothing.
	start := 0
	if p[0] == "json" && len(p) > 1 {
		start = 1
	}
	for i := start; i < len(p); i++ {
		if i > start {
			b.WriteByte('.')
		}
		b.WriteString(p[i])
	}
	return b.String()
}

var variables = map[string]bool{"status": true, "headers": true, "body": true, "json": true, "latency": true, "tls": true, "now": true}

// exprPaths lists the distinct variable paths an expression reads, in
// source order, for the values shown when a condition fails.
func exprPaths(e celast.Expr) []path {
	var out []path
	seen := map[string]bool{}
	add := func(p path) {
		k := strings.Join(p, "\x00")
		if !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	var walk func(e celast.Expr)
	walk = func(e celast.Expr) {
		if p, ok := chain(e); ok {
			if variables[p[0]] {
				add(p)
			}
			return
		}
		switch e.Kind() {
		case celast.SelectKind:
			walk(e.AsSelect().Operand())
		case celast.CallKind:
			c := e.AsCall()
			if c.IsMemberFunction() {
				walk(c.Target())
			}
			for _, a := range c.Args() {
				walk(a)
			}
		case celast.ListKind:
			for _, el := range e.AsList().Elements() {
				walk(el)
			}
		case celast.MapKind:
			for _, en := range e.AsMap().Entries() {
				walk(en.AsMapEntry().Key())
				walk(en.AsMapEntry().Value())
			}
		case celast.ComprehensionKind:
			// The range is what the reader cares about; loop variables are
			// not variables of the probe.
			walk(e.AsComprehension().IterRange())
		}
	}
	walk(e)
	return out
}

// chain turns ident, ident.field... and ident["key"] chains into a path.
func chain(e celast.Expr) (path, bool) {
	switch e.Kind() {
	case celast.IdentKind:
		return path{e.AsIdent()}, true
	case celast.SelectKind:
		s := e.AsSelect()
		if s.IsTestOnly() {
			return nil, false
		}
		p, ok := chain(s.Operand())
		if !ok {
			return nil, false
		}
		return append(p, s.FieldName()), true
	case celast.CallKind:
		c := e.AsCall()
		if c.FunctionName() != "_[_]" || len(c.Args()) != 2 || c.Args()[1].Kind() != celast.LiteralKind {
			return nil, false
		}
		p, ok := chain(c.Args()[0])
		if !ok {
			return nil, false
		}
		switch k := c.Args()[1].AsLiteral().(type) {
		case types.String:
			return append(p, string(k)), true
		case types.Int:
			return append(p, strconv.FormatInt(int64(k), 10)), true
		}
	}
	return nil, false
}

// describe renders "code=503 msg=\"down\"" for the paths of a failed
// condition.
func (a *activation) describe(paths []path) string {
	var parts []string
	for _, p := range paths {
		v, ok := a.lookup(p)
		if !ok {
			parts = append(parts, p.String()+" missing")
			continue
		}
		parts = append(parts, p.String()+"="+formatNative(v))
	}
	return strings.Join(parts, " ")
}

func (a *activation) lookup(p path) (any, bool) {
	var cur any
	switch p[0] {
	case "status":
		cur = a.in.Status
	case "latency":
		cur = a.in.Latency
	case "body":
		if len(p) > 1 {
			return nil, false
		}
		return rawString(excerpt(a.in.Body, 64)), true
	case "now":
		cur = a.now
	case "headers":
		v, _ := a.ResolveName("headers")
		cur = toAnyMap(v.(map[string]string))
	case "json":
		if a.jsonErr != nil {
			return nil, false
		}
		cur = a.jsonVal
	case "tls":
		t := a.in.TLS
		if t == nil {
			t = &TLS{}
		}
		cur = map[string]any{"not_after": t.NotAfter, "not_before": t.NotBefore, "subject": t.Subject,
			"issuer": t.Issuer, "version": t.Version, "server_name": t.ServerName}
	default:
		return nil, false
	}
	for _, k := range p[1:] {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[k]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

func toAnyMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// rawString is already quoted for display.
type rawString string

// formatNative renders a value compactly: strings quoted, durations and
// times in Go notation, aggregates as short JSON.
func formatNative(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case rawString:
		return string(x)
	case string:
		return strconv.Quote(truncate(x, 64))
	case time.Duration:
		return x.String()
	case time.Time:
		if x.IsZero() {
			return "none"
		}
		return x.UTC().Format(time.RFC3339)
	case int, int64, bool:
		return fmt.Sprint(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return truncate(fmt.Sprint(x), 64)
		}
		return truncate(string(b), 64)
	}
}

// excerpt quotes at most n bytes of b, cut on a rune boundary.
func excerpt(b []byte, n int) string {
	s := string(b)
	if len(s) > n {
		return strconv.Quote(truncate(s, n)) + "…"
	}
	return strconv.Quote(s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
