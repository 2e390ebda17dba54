package condition

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Expect is the short form of the common Healthy conditions, e.g.
// `expect: {status: 200, json: {code: 0}}`. CEL returns the same expressions
// a person would write (`status == 200`, `json.code == 0`), so sugar and CEL
// behave, and explain failures, identically.
type Expect struct {
	// Status is the required status code; 0 leaves it unchecked.
	Status int `yaml:"status,omitempty" json:"status,omitempty"`
	// JSON maps body fields to required values; nested maps address nested
	// fields (`{data: {state: UP}}` → `json.data.state == "UP"`).
	JSON map[string]any `yaml:"json,omitempty" json:"json,omitempty"`
	// Headers maps header names to required values (compared exactly).
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	// BodyContains requires the raw body to contain this text.
	BodyContains string `yaml:"body_contains,omitempty" json:"body_contains,omitempty"`
	// MaxLatency, when set, requires the whole probe to take less.
	MaxLatency time.Duration `yaml:"max_latency,omitempty" json:"max_latency,omitempty"`
}

// CEL returns the Healthy expressions the sugar stands for, in a fixed
// order: status, headers, body, json (sorted by path), latency.
func (e Expect) CEL() ([]string, error) {
	var out []string
	if e.Status != 0 {
		if e.Status < 100 || e.Status > 999 {
			return nil, &Error{Field: "expect.status", Expr: strconv.Itoa(e.Status), Line: 1, Column: 1,
				Msg: "a status code has three digits (100-999)"}
		}
		out = append(out, fmt.Sprintf("status == %d", e.Status))
	}
	for _, k := range sortedKeys(e.Headers) {
		out = append(out, fmt.Sprintf("headers[%s] == %s", quote(strings.ToLower(k)), quote(e.Headers[k])))
	}
	if e.BodyContains != "" {
		out = append(out, fmt.Sprintf("body.contains(%s)", quote(e.BodyContains)))
	}
	if len(e.JSON) > 0 {
		js, err := jsonExprs("json", "expect.json", e.JSON)
		if err != nil {
			return nil, err
		}
		out = append(out, js...)
	}
	if e.MaxLatency < 0 {
		return nil, &Error{Field: "expect.max_latency", Expr: e.MaxLatency.String(), Line: 1, Column: 1, Msg: "must be positive"}
	}
	if e.MaxLatency > 0 {
		out = append(out, fmt.Sprintf("latency < duration(%s)", quote(e.MaxLatency.String())))
	}
	return out, nil
}

func jsonExprs(sel, field string, m map[string]any) ([]string, error) {
	if len(m) == 0 {
		return nil, &Error{Field: field, Expr: "{}", Line: 1, Column: 1,
			Msg: "an empty object says nothing to check; write a healthy condition such as has(" + sel + ".x) instead"}
	}
	var out []string
	for _, k := range sortedKeys(m) {
		s := selector(sel, k)
		f := field + "." + k
		switch v := m[k].(type) {
		case map[string]any:
			sub, err := jsonExprs(s, f, v)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		default:
			lit, err := literal(v)
			if err != nil {
				return nil, &Error{Field: f, Expr: fmt.Sprint(v), Line: 1, Column: 1, Msg: err.Error()}
			}
			out = append(out, s+" == "+lit)
		}
	}
	return out, nil
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var reserved = map[string]bool{
	"true": true, "false": true, "null": true, "in": true, "as": true, "break": true, "const": true,
	"continue": true, "else": true, "for": true, "function": true, "if": true, "import": true,
	"let": true, "loop": true, "package": true, "namespace": true, "return": true, "var": true,
	"void": true, "while": true,
}

func selector(base, key string) string {
	if identRE.MatchString(key) && !reserved[key] {
		return base + "." + key
	}
	return base + "[" + quote(key) + "]"
}

// literal renders a config value as a CEL literal.
func literal(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "null", nil
	case bool:
		return strconv.FormatBool(x), nil
	case string:
		return quote(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint64:
		if x > math.MaxInt64 {
			return "", fmt.Errorf("number %d is too large", x)
		}
		return strconv.FormatUint(x, 10), nil
	case float32:
		return literal(float64(x))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", fmt.Errorf("%v is not a JSON number", x)
		}
		// Integral numbers compare as ints, like the parsed body's.
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return strconv.FormatInt(int64(x), 10), nil
		}
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			s, err := literal(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return "[" + strings.Join(parts, ", ") + "]", nil
	}
	return "", fmt.Errorf("unsupported value of type %T; use a string, number, bool, null, list or nested object", v)
}

// quote renders s as a CEL double-quoted string literal.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
