package condition

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	"github.com/fb4b1dcc/pulse/status"
)

// DefaultCostLimit bounds the work of one evaluation, in CEL cost units
// (roughly one per operation, more for string and list work). A condition
// that walks a 64 KiB JSON body fits easily; a nested comprehension that
// would loop for seconds does not.
const DefaultCostLimit = 100_000

// maxExprLen keeps a pasted blob from being compiled as a condition.
const maxExprLen = 4096

// Spec is a module's conditions as configured. Healthy conditions must all
// hold; Degraded rules name milder failures. The config package maps YAML
// onto this struct.
type Spec struct {
	// Healthy are CEL boolean expressions; every one must be true.
	Healthy []string `yaml:"healthy,omitempty" json:"healthy,omitempty"`
	// Degraded rules are checked in order; the first that matches makes the
	// verdict Degraded, also when a Healthy condition failed (the rule names
	// a known, milder failure: write it specifically enough, e.g.
	// `status == 200 && latency > duration("300ms")`, if it must not excuse
	// other failures).
	Degraded []Rule `yaml:"degraded,omitempty" json:"degraded,omitempty"`
	// Expect is sugar for the common Healthy conditions; it is compiled to
	// CEL and prepended to Healthy.
	Expect *Expect `yaml:"expect,omitempty" json:"expect,omitempty"`
}

// Rule is one degraded rule.
type Rule struct {
	// When is a CEL boolean expression.
	When string `yaml:"when" json:"when"`
	// Reason is an optional CEL expression giving the human reason, e.g.
	// `json.msg`. Without it the reason is "degraded: <when>".
	Reason string `yaml:"reason,omitempty" json:"reason,omitempty"`
}

// Input is what one probe observed. Fields a prober does not have stay zero.
type Input struct {
	Status  int                 // HTTP status code, gRPC serving status number, 0 otherwise
	Headers map[string][]string // response headers (http.Header fits); matched case-insensitively
	Body    []byte              // raw body, reply or banner, already size-limited by the prober
	// BodyTruncated says Body was cut at the prober's read limit, so it
	// cannot be parsed as JSON.
	BodyTruncated bool
	Latency       time.Duration
	TLS           *TLS      // nil without TLS
	Now           time.Time // wall time for `now`; zero means time.Now()
}

// TLS is the peer certificate information conditions can read as
// `tls.not_after` and so on.
type TLS struct {
	NotAfter   time.Time `cel:"not_after"`
	NotBefore  time.Time `cel:"not_before"`
	Subject    string    `cel:"subject"`
	Issuer     string    `cel:"issuer"`
	Version    string    `cel:"version"`
	ServerName string    `cel:"server_name"`
}

// Verdict is the outcome of evaluating a Set.
type Verdict struct {
	Status status.Status
	Class  status.ErrorClass // empty when Healthy
	Reason string            // empty when Healthy
	Err    error             // nil when Healthy or Degraded
}

// Option configures compilation.
type Option func(*options)

type options struct {
	costLimit      uint64
	defaultHealthy []string
}

// WithCostLimit sets the per-evaluation cost limit (default DefaultCostLimit).
func WithCostLimit(n uint64) Option { return func(o *options) { o.costLimit = n } }

// WithDefaultHealthy gives the Healthy conditions used when the Spec has
// neither Healthy nor Expect (a prober's idea of success, e.g. a 2xx status).
func WithDefaultHealthy(exprs ...string) Option {
	return func(o *options) { o.defaultHealthy = exprs }
}

// Set is a compiled, immutable set of conditions; Eval is safe for
// concurrent use.
type Set struct {
	healthy   []*compiled
	degraded  []*rule
	costLimit uint64
	usesJSON  bool
	usesBody  bool
	usesHdr   bool
	reads     map[string]bool // variables any expression reads
}

type compiled struct {
	field string // "healthy[0]", for messages
	expr  string
	prg   cel.Program
	paths []path // variable paths the expression reads, for failure reasons
	json  bool   // reads json
}

type rule struct {
	when   *compiled
	reason *compiled // nil: default reason
}

// Compile type-checks and plans every expression of spec. All errors are
// returned at once (errors.Join of *Error values, each pointing at a column).
func Compile(spec Spec, opts ...Option) (*Set, error) {
	o := options{costLimit: DefaultCostLimit}
	for _, opt := range opts {
		opt(&o)
	}
	env, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("condition: build CEL environment: %w", err)
	}
	s := &Set{costLimit: o.costLimit}
	var errs []error

	healthy := spec.Healthy
	fieldOf := func(i int) string { return fmt.Sprintf("healthy[%d]", i) }
	if spec.Expect != nil {
		sugar, err := spec.Expect.CEL()
		if err != nil {
			errs = append(errs, err)
		}
		healthy = append(append([]string(nil), sugar...), spec.Healthy...)
		n := len(sugar)
		fieldOf = func(i int) string {
			if i < n {
				return "expect"
			}
			return fmt.Sprintf("healthy[%d]", i-n)
		}
	}
	if len(healthy) == 0 && len(errs) == 0 {
		healthy = o.defaultHealthy
		fieldOf = func(i int) string { return fmt.Sprintf("default[%d]", i) }
	}
	for i, src := range healthy {
		c, err := s.compile(env, fieldOf(i), src, cel.BoolType)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.healthy = append(s.healthy, c)
	}
	for i, r := range spec.Degraded {
		when, err := s.compile(env, fmt.Sprintf("degraded[%d].when", i), r.When, cel.BoolType)
		if err != nil {
			errs = append(errs, err)
		}
		var reason *compiled
		if strings.TrimSpace(r.Reason) != "" {
			reason, err = s.compile(env, fmt.Sprintf("degraded[%d].reason", i), r.Reason, nil)
			if err != nil {
				errs = append(errs, err)
			}
		}
		if when != nil {
			s.degraded = append(s.degraded, &rule{when: when, reason: reason})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[TLS](), ext.ParseStructTags(true)),
		ext.Strings(),
		cel.CrossTypeNumericComparisons(true),
		cel.DefaultUTCTimeZone(true),
		cel.Variable("status", cel.IntType),
		cel.Variable("headers", cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable("body", cel.StringType),
		cel.Variable("json", cel.DynType),
		cel.Variable("latency", cel.DurationType),
		cel.Variable("tls", cel.ObjectType("condition.TLS")),
		cel.Variable("now", cel.TimestampType),
	)
}

// compile parses and checks one expression. want is the required result
// type; nil accepts string or dyn (reason expressions).
func (s *Set) compile(env *cel.Env, field, src string, want *cel.Type) (*compiled, error) {
	if strings.TrimSpace(src) == "" {
		return nil, &Error{Field: field, Expr: src, Line: 1, Column: 1, Msg: "empty expression"}
	}
	if len(src) > maxExprLen {
		return nil, &Error{Field: field, Expr: src[:64] + "…", Line: 1, Column: 1,
			Msg: fmt.Sprintf("expression is %d bytes, the limit is %d", len(src), maxExprLen)}
	}
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, issueError(field, src, iss)
	}
	out := ast.OutputType()
	switch {
	case want != nil && !out.IsExactType(want) && !out.IsExactType(cel.DynType):
		return nil, &Error{Field: field, Expr: src, Line: 1, Column: 1,
			Msg: fmt.Sprintf("must be a %s expression, this one gives %s", want, out)}
	case want == nil && !out.IsExactType(cel.StringType) && !out.IsExactType(cel.DynType):
		return nil, &Error{Field: field, Expr: src, Line: 1, Column: 1,
			Msg: fmt.Sprintf("a reason must be a string expression, this one gives %s", out)}
	}
	prg, err := env.Program(ast,
		cel.CostLimit(s.costLimit),
		cel.InterruptCheckFrequency(64),
	)
	if err != nil {
		return nil, &Error{Field: field, Expr: src, Line: 1, Column: 1, Msg: err.Error()}
	}
	c := &compiled{field: field, expr: src, prg: prg, paths: exprPaths(ast.NativeRep().Expr())}
	if s.reads == nil {
		s.reads = map[string]bool{}
	}
	for _, p := range c.paths {
		s.reads[p[0]] = true
		switch p[0] {
		case "json":
			c.json = true
			s.usesJSON = true
		case "body":
			s.usesBody = true
		case "headers":
			s.usesHdr = true
		}
	}
	return c, nil
}

// UsesBody reports whether any expression reads the body (raw or as JSON),
// so a prober can skip reading it when nothing needs it.
func (s *Set) UsesBody() bool { return s.usesBody || s.usesJSON }

// Reads reports whether any expression reads the variable name ("tls",
// "headers", ...), so a prober can skip preparing what nobody reads.
func (s *Set) Reads(name string) bool { return s.reads[name] }

// UsesJSON reports whether any expression reads `json`.
func (s *Set) UsesJSON() bool { return s.usesJSON }

// Healthy returns the CEL text of the Healthy conditions, sugar included.
func (s *Set) Healthy() []string {
	out := make([]string, len(s.healthy))
	for i, c := range s.healthy {
		out[i] = c.expr
	}
	return out
}

// Eval judges in. It never panics: evaluation errors, cost-limit stops and
// bodies that are not JSON become an Unhealthy verdict with a reason.
func (s *Set) Eval(ctx context.Context, in *Input) (v Verdict) {
	defer func() {
		if r := recover(); r != nil {
			err := status.Errorf(status.ClassInternal, "condition: evaluation panicked: %v", r)
			v = Verdict{Status: status.Unhealthy, Class: status.ClassInternal, Reason: err.Error(), Err: err}
		}
	}()
	a := &activation{in: in}
	if in.Now.IsZero() {
		a.now = time.Now()
	} else {
		a.now = in.Now
	}
	if s.usesJSON {
		a.parseJSON()
	}

	var failed Verdict
	for _, c := range s.healthy {
		ok, vd := s.evalBool(ctx, c, a)
		if !ok {
			failed = vd
			break
		}
	}
	for _, r := range s.degraded {
		if r.when.json && a.jsonErr != nil {
			continue // a rule over a body that is not JSON cannot match
		}
		ok, _ := s.evalBool(ctx, r.when, a)
		if !ok {
			continue
		}
		return Verdict{Status: status.Degraded, Class: status.ClassCondition, Reason: s.reason(ctx, r, a)}
	}
	if failed.Status != status.Unknown {
		return failed
	}
	return Verdict{Status: status.Healthy}
}

// evalBool evaluates one boolean condition; on false or error it returns the
// Unhealthy verdict describing why.
func (s *Set) evalBool(ctx context.Context, c *compiled, a *activation) (bool, Verdict) {
	if c.json && a.jsonErr != nil {
		err := status.Errorf(status.ClassProtocol, "condition %s needs a JSON body: %w", c.expr, a.jsonErr)
		return false, Verdict{Status: status.Unhealthy, Class: status.ClassProtocol, Reason: err.Error(), Err: err}
	}
	out, _, err := c.prg.ContextEval(ctx, a)
	if err != nil {
		msg := err.Error()
		if strings.Contains(msg, "cost limit exceeded") {
			msg = fmt.Sprintf("stopped by the cost limit (%d): the expression does too much work per probe", s.costLimit)
		}
		e := status.Errorf(status.ClassCondition, "condition %s: %s", c.expr, msg)
		return false, Verdict{Status: status.Unhealthy, Class: status.ClassCondition, Reason: e.Error(), Err: e}
	}
	if b, ok := out.(types.Bool); ok && bool(b) {
		return true, Verdict{}
	}
	if _, ok := out.(types.Bool); !ok {
		e := status.Errorf(status.ClassCondition, "condition %s gave %s, not a bool", c.expr, formatVal(out))
		return false, Verdict{Status: status.Unhealthy, Class: status.ClassCondition, Reason: e.Error(), Err: e}
	}
	reason := "condition " + c.expr + " failed"
	if vals := a.describe(c.paths); vals != "" {
		reason += ": " + vals
	}
	return false, Verdict{Status: status.Unhealthy, Class: status.ClassCondition, Reason: reason,
		Err: status.WithClass(status.ClassCondition, errors.New(reason))}
}

func (s *Set) reason(ctx context.Context, r *rule, a *activation) string {
	def := "degraded: " + r.when.expr
	if r.reason == nil || (r.reason.json && a.jsonErr != nil) {
		return def
	}
	out, _, err := r.reason.prg.ContextEval(ctx, a)
	if err != nil {
		return def
	}
	if str, ok := out.(types.String); ok {
		if str == "" {
			return def
		}
		return string(str)
	}
	return formatVal(out)
}

// activation resolves the CEL variables lazily from one Input.
type activation struct {
	in      *Input
	now     time.Time
	jsonVal any
	jsonErr error
	headers map[string]string
}

var _ interpreter.Activation = (*activation)(nil)

func (a *activation) Parent() interpreter.Activation { return nil }

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "status":
		return int64(a.in.Status), true
	case "latency":
		return a.in.Latency, true
	case "body":
		return string(a.in.Body), true
	case "headers":
		if a.headers == nil {
			a.headers = make(map[string]string, len(a.in.Headers))
			for k, vs := range a.in.Headers {
				a.headers[strings.ToLower(k)] = strings.Join(vs, ", ")
			}
		}
		return a.headers, true
	case "json":
		if a.jsonErr != nil {
			return types.NewErr("body is not JSON: %v", a.jsonErr), true
		}
		return a.jsonVal, true
	case "tls":
		if a.in.TLS == nil {
			return &TLS{}, true
		}
		return a.in.TLS, true
	case "now":
		return a.now, true
	}
	return nil, false
}

func (a *activation) parseJSON() {
	if a.in.BodyTruncated {
		a.jsonErr = errors.New("the body was cut at the read limit; raise the body limit or trim the endpoint's answer")
		return
	}
	v, err := parseJSON(a.in.Body)
	if err != nil {
		a.jsonErr = fmt.Errorf("%w (body starts %s)", err, excerpt(a.in.Body, 40))
		return
	}
	a.jsonVal = v
}

// formatVal renders a CEL value for a reason.
func formatVal(v ref.Val) string {
	if v == nil {
		return "null"
	}
	nv, err := v.ConvertToNative(reflect.TypeFor[any]())
	if err != nil {
		return fmt.Sprint(v)
	}
	return formatNative(nv)
}
