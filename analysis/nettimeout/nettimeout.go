package nettimeout

import (
	"fmt"
	"go/ast"
	"go/constant"
	"go/types"
	"strings"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/passes/inspect"
	"golang.org/x/tools/go/ast/inspector"

	"github.com/fb4b1dcc/pulse/analysis/internal/lintkit"
)

// Analyzer reports network operations without a timeout or deadline.
var Analyzer = &analysis.Analyzer{
	Name:     "nettimeout",
	Doc:      "report dials, TLS handshakes, HTTP requests and gRPC calls with no timeout or deadline (AP-11: a silent peer blocks the heartbeat forever); use Dialer.Timeout, http.Client.Timeout or a context deadline",
	URL:      "https://github.com/fb4b1dcc/pulse/blob/main/docs/pulselint.md#nettimeout",
	Requires: []*analysis.Analyzer{inspect.Analyzer},
	Run:      run,
}

const (
	grpcPath     = "google.golang.org/grpc"
	fixTimeout   = "10 * time.Second"
	fixTimeoutFn = "10*time.Second"
)

type checker struct {
	pass *analysis.Pass
	rep  *lintkit.Reporter
}

func run(pass *analysis.Pass) (any, error) {
	ins := pass.ResultOf[inspect.Analyzer].(*inspector.Inspector)
	c := &checker{pass: pass, rep: lintkit.NewReporter(pass)}
	for cur := range ins.Root().Preorder((*ast.CallExpr)(nil)) {
		c.check(cur, cur.Node().(*ast.CallExpr))
	}
	c.rep.Flush()
	return nil, nil
}

func (c *checker) check(cur inspector.Cursor, call *ast.CallExpr) {
	info := c.pass.TypesInfo
	fn := lintkit.Callee(info, call)
	if fn == nil {
		return
	}
	root := outermostFunc(cur)
	switch {
	case lintkit.IsFunc(fn, "net", "Dial"):
		if len(call.Args) == 2 && !connectionless(info, call.Args[0]) && !c.passThrough(root, call) {
			c.rep.Report(analysis.Diagnostic{
				Pos: call.Pos(), End: call.End(),
				Message:        "net.Dial has no timeout: against a host that drops SYNs it waits for the kernel's connect timeout (minutes), and the heartbeat with it (AP-11, INC-2022-052); use net.DialTimeout, a net.Dialer with Timeout, or DialContext with a deadline",
				SuggestedFixes: c.dialTimeoutFix(call),
			})
		}
	case lintkit.IsFunc(fn, "net", "DialTCP"):
		c.rep.Reportf(call.Pos(), "net.DialTCP has no timeout: against a host that drops SYNs it waits for the kernel's connect timeout (minutes) (AP-11); use a net.Dialer with Timeout")
	case lintkit.IsFunc(fn, "crypto/tls", "Dial"):
		if c.passThrough(root, call) {
			return
		}
		c.rep.Report(analysis.Diagnostic{
			Pos: call.Pos(), End: call.End(),
			Message:        "tls.Dial has no timeout for the connect or the handshake: a peer that accepts TCP and never answers the handshake blocks this goroutine forever (AP-11, INC-2022-052, INC-2023-281); use tls.DialWithDialer with a net.Dialer{Timeout: ...} or tls.Dialer.DialContext with a deadline",
			SuggestedFixes: c.tlsDialFix(call),
		})
	case lintkit.IsFunc(fn, "crypto/tls", "DialWithDialer") && len(call.Args) > 0:
		if lit, zero := c.zeroDialer(root, call.Args[0]); zero {
			c.reportDialer(call, lit, "tls.DialWithDialer with a net.Dialer that has no Timeout")
		}
	case lintkit.IsMethod(fn, "net", "Dialer", "Dial"):
		if lit, zero := c.zeroDialer(root, recvOf(call)); zero {
			c.reportDialer(call, lit, "Dial on a net.Dialer that has no Timeout")
		}
	case lintkit.IsMethod(fn, "net", "Dialer", "DialContext"):
		if len(call.Args) > 0 && c.noDeadline(root, call.Args[0]) {
			if lit, zero := c.zeroDialer(root, recvOf(call)); zero {
				c.reportDialer(call, lit, "DialContext with a context that never expires on a net.Dialer that has no Timeout")
			}
		}
	case lintkit.IsFunc(fn, "net/http", "Get", "Head", "Post", "PostForm"):
		c.rep.Reportf(call.Pos(), "http.%s uses http.DefaultClient, which has no timeout: a target that accepts the connection and never answers hangs this request, and the probe or heartbeat behind it, forever (AP-11); use an http.Client with Timeout or http.NewRequestWithContext with a deadline", fn.Name())
	case lintkit.IsMethod(fn, "net/http", "Client", "Get", "Head", "Post", "PostForm"):
		if lit, known := c.clientWithoutTimeout(root, recvOf(call)); known {
			c.reportClient(call, lit, fmt.Sprintf("(*http.Client).%s on a client without Timeout", fn.Name()))
		}
	case lintkit.IsMethod(fn, "net/http", "Client", "Do"):
		if len(call.Args) == 1 && c.requestWithoutDeadline(root, call.Args[0]) {
			if lit, known := c.clientWithoutTimeout(root, recvOf(call)); known {
				c.reportClient(call, lit, "(*http.Client).Do of a request without a context deadline on a client without Timeout")
			}
		}
	case lintkit.IsFunc(fn, grpcPath, "Dial", "DialContext"):
		c.checkGRPCDial(root, call, fn)
	default:
		if isUnaryGRPC(fn) && len(call.Args) > 0 && c.noDeadline(root, call.Args[0]) {
			c.rep.Reportf(call.Pos(), "gRPC call %s with a context that never expires: if the server stops answering or the connection half-opens, this call (and the heartbeat waiting on it) hangs forever (AP-11, AP-07); pass a context with a timeout", fn.Name())
		}
	}
}

func outermostFunc(cur inspector.Cursor) ast.Node {
	var outer ast.Node
	for f := range cur.Enclosing((*ast.FuncDecl)(nil), (*ast.FuncLit)(nil)) {
		outer = f.Node()
	}
	return outer
}

func recvOf(call *ast.CallExpr) ast.Expr {
	if sel, ok := ast.Unparen(call.Fun).(*ast.SelectorExpr); ok {
		return sel.X
	}
	return nil
}

// passThrough reports whether the dial is the body of a Dial-like wrapper
// that forwards its own network and address parameters (proxy.Direct.Dial,
// dns.Dial): such a function promises net.Dial's behaviour, and its caller
// chose a dial without a timeout (the wrappers offer DialTimeout or
// DialContext next to it).
func (c *checker) passThrough(root ast.Node, call *ast.CallExpr) bool {
	fd, ok := root.(*ast.FuncDecl)
	if !ok || !strings.HasPrefix(fd.Name.Name, "Dial") || len(call.Args) < 2 {
		return false
	}
	params := make(map[types.Object]bool)
	for _, f := range fd.Type.Params.List {
		for _, n := range f.Names {
			params[c.pass.TypesInfo.Defs[n]] = true
		}
	}
	for _, a := range call.Args[:2] {
		id, ok := ast.Unparen(a).(*ast.Ident)
		if !ok || !params[c.pass.TypesInfo.Uses[id]] {
			return false
		}
	}
	return true
}

// connectionless reports whether the network argument is a constant naming
// a network whose dial does no handshake (udp, ip) or cannot hang on a
// remote host (unix sockets).
func connectionless(info *types.Info, network ast.Expr) bool {
	tv, ok := info.Types[network]
	if !ok || tv.Value == nil || tv.Value.Kind() != constant.String {
		return false
	}
	n := constant.StringVal(tv.Value)
	return strings.HasPrefix(n, "udp") || strings.HasPrefix(n, "unix") || strings.HasPrefix(n, "ip")
}

// localVar returns the local variable e names, if any.
func (c *checker) localVar(e ast.Expr) *types.Var {
	id, ok := ast.Unparen(e).(*ast.Ident)
	if !ok {
		return nil
	}
	v, ok := c.pass.TypesInfo.Uses[id].(*types.Var)
	if !ok || v.IsField() || v.Parent() == c.pass.Pkg.Scope() || v.Parent() == nil {
		return nil
	}
	return v
}

// noDeadline reports whether ctx is provably a context without deadline:
// context.Background/TODO, directly or through a local assigned once.
func (c *checker) noDeadline(root ast.Node, ctx ast.Expr) bool {
	info := c.pass.TypesInfo
	if lintkit.IsContextBackground(info, ctx) {
		return true
	}
	if v := c.localVar(ctx); v != nil {
		if val, _, ok := lintkit.SoleValue(info, root, v); ok && val != nil {
			return lintkit.IsContextBackground(info, val)
		}
	}
	return false
}

// zeroDialer reports whether e is provably a net.Dialer with neither
// Timeout nor Deadline, returning its literal when there is one to fix.
func (c *checker) zeroDialer(root ast.Node, e ast.Expr) (*ast.CompositeLit, bool) {
	if e == nil {
		return nil, false
	}
	if lit, ok := lintkit.CompositeLit(e); ok {
		return lit, !lintkit.HasKey(lit, "Timeout", "Deadline")
	}
	v := c.localVar(e)
	if v == nil || lintkit.FieldAssigned(c.pass.TypesInfo, root, v, "Timeout", "Deadline") {
		return nil, false
	}
	val, zero, ok := lintkit.SoleValue(c.pass.TypesInfo, root, v)
	if !ok {
		return nil, false
	}
	if zero {
		return nil, true
	}
	if lit, ok := lintkit.CompositeLit(val); ok {
		return lit, !lintkit.HasKey(lit, "Timeout", "Deadline")
	}
	return nil, false
}

func (c *checker) reportDialer(call *ast.CallExpr, lit *ast.CompositeLit, what string) {
	d := analysis.Diagnostic{
		Pos: call.Pos(), End: call.End(),
		Message: what + ": the connect (and any TLS handshake) can block for minutes or forever against a silent peer (AP-11, INC-2022-052); set Dialer.Timeout or dial with a context deadline",
	}
	if lit != nil {
		d.SuggestedFixes = c.addTimeoutField(lit)
	}
	c.rep.Report(d)
}

// clientWithoutTimeout reports whether e is provably an *http.Client with
// no Timeout: http.DefaultClient, or a literal (directly or through a local
// assigned once) without Timeout whose Timeout is never set afterwards.
func (c *checker) clientWithoutTimeout(root ast.Node, e ast.Expr) (*ast.CompositeLit, bool) {
	if e == nil {
		return nil, false
	}
	info := c.pass.TypesInfo
	isDefault := func(e ast.Expr) bool {
		v, ok := lintkit.ObjectOf(info, e).(*types.Var)
		return ok && v.Pkg() != nil && v.Pkg().Path() == "net/http" && v.Name() == "DefaultClient"
	}
	if isDefault(e) {
		return nil, true
	}
	if lit, ok := lintkit.CompositeLit(e); ok {
		return lit, !lintkit.HasKey(lit, "Timeout")
	}
	v := c.localVar(e)
	if v == nil || lintkit.FieldAssigned(info, root, v, "Timeout") {
		return nil, false
	}
	val, zero, ok := lintkit.SoleValue(info, root, v)
	switch {
	case !ok:
		return nil, false
	case zero:
		return nil, true
	case isDefault(val):
		return nil, true
	}
	if lit, ok := lintkit.CompositeLit(val); ok {
		return lit, !lintkit.HasKey(lit, "Timeout")
	}
	return nil, false
}

// requestWithoutDeadline reports whether req is provably built without a
// context deadline: http.NewRequest, or NewRequestWithContext with
// context.Background/TODO, through a local assigned once and never passed
// through WithContext/Clone.
func (c *checker) requestWithoutDeadline(root ast.Node, req ast.Expr) bool {
	info := c.pass.TypesInfo
	v := c.localVar(req)
	if v == nil {
		return false
	}
	val, _, ok := lintkit.SoleValue(info, root, v)
	if !ok || val == nil {
		return false
	}
	call, ok := ast.Unparen(val).(*ast.CallExpr)
	if !ok {
		return false
	}
	fn := lintkit.Callee(info, call)
	switch {
	case lintkit.IsFunc(fn, "net/http", "NewRequest"):
		return true
	case lintkit.IsFunc(fn, "net/http", "NewRequestWithContext"):
		return len(call.Args) > 0 && c.noDeadline(root, call.Args[0])
	}
	return false
}

func (c *checker) reportClient(call *ast.CallExpr, lit *ast.CompositeLit, what string) {
	d := analysis.Diagnostic{
		Pos: call.Pos(), End: call.End(),
		Message: what + ": a target that accepts the connection and never answers hangs this request, and the probe or heartbeat behind it, forever (AP-11); set http.Client.Timeout or use a request context with a deadline",
	}
	if lit != nil {
		d.SuggestedFixes = c.addTimeoutField(lit)
	}
	c.rep.Report(d)
}

func (c *checker) checkGRPCDial(root ast.Node, call *ast.CallExpr, fn *types.Func) {
	if call.Ellipsis.IsValid() {
		return // options spread from a slice: unknown
	}
	info := c.pass.TypesInfo
	block, timeout := false, false
	for _, a := range call.Args {
		ac, ok := ast.Unparen(a).(*ast.CallExpr)
		if !ok {
			continue
		}
		switch f := lintkit.Callee(info, ac); {
		case lintkit.IsFunc(f, grpcPath, "WithBlock"):
			block = true
		case lintkit.IsFunc(f, grpcPath, "WithTimeout"):
			timeout = true
		}
	}
	if !block || timeout {
		return
	}
	if fn.Name() == "DialContext" && (len(call.Args) == 0 || !c.noDeadline(root, call.Args[0])) {
		return
	}
	c.rep.Reportf(call.Pos(), "grpc.%s with WithBlock and no deadline blocks forever while the target is unreachable (AP-11); use a context with a timeout (grpc.DialContext) or grpc.NewClient with a deadline on each call", fn.Name())
}

// isUnaryGRPC reports whether fn looks like a unary gRPC client method: it
// takes (context.Context, ..., ...grpc.CallOption) and returns (*Reply,
// error), as generated clients do, or is (*grpc.ClientConn).Invoke.
func isUnaryGRPC(fn *types.Func) bool {
	if lintkit.IsMethod(fn, grpcPath, "ClientConn", "Invoke") {
		return true
	}
	sig, ok := fn.Type().(*types.Signature)
	if !ok || !sig.Variadic() || sig.Params().Len() < 2 || sig.Results().Len() != 2 {
		return false
	}
	if !lintkit.IsNamed(sig.Params().At(0).Type(), "context", "Context") {
		return false
	}
	last, ok := sig.Params().At(sig.Params().Len() - 1).Type().(*types.Slice)
	if !ok || !lintkit.IsNamed(last.Elem(), grpcPath, "CallOption") {
		return false
	}
	if _, ok := sig.Results().At(0).Type().(*types.Pointer); !ok {
		return false // streams return an interface; they are long-lived by design
	}
	return lintkit.IsErrorType(sig.Results().At(1).Type())
}

// --- suggested fixes ---

// imports returns the local names of the packages (the fix's text uses
// them) and the edits that import any that are missing.
func (c *checker) imports(n ast.Node, paths ...string) ([]string, []analysis.TextEdit, bool) {
	f := lintkit.FileOf(c.pass, n.Pos())
	if f == nil {
		return nil, nil, false
	}
	return lintkit.Imports(f, paths...)
}

func timeout(timeName, expr string) string { return strings.Replace(expr, "time.", timeName+".", 1) }

// dialTimeoutFix: net.Dial(n, a) → net.DialTimeout(n, a, 10*time.Second).
func (c *checker) dialTimeoutFix(call *ast.CallExpr) []analysis.SuggestedFix {
	sel, ok := ast.Unparen(call.Fun).(*ast.SelectorExpr)
	if !ok || call.Ellipsis.IsValid() {
		return nil
	}
	names, edits, ok := c.imports(call, "time")
	if !ok {
		return nil
	}
	edits = append(edits,
		analysis.TextEdit{Pos: sel.Sel.Pos(), End: sel.Sel.End(), NewText: []byte("DialTimeout")},
		analysis.TextEdit{Pos: call.Rparen, End: call.Rparen, NewText: []byte(", " + timeout(names[0], fixTimeoutFn))},
	)
	return []analysis.SuggestedFix{{Message: "use net.DialTimeout with a 10s timeout", TextEdits: edits}}
}

// tlsDialFix: tls.Dial(n, a, cfg) → tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, n, a, cfg).
func (c *checker) tlsDialFix(call *ast.CallExpr) []analysis.SuggestedFix {
	sel, ok := ast.Unparen(call.Fun).(*ast.SelectorExpr)
	if !ok || call.Ellipsis.IsValid() {
		return nil
	}
	names, edits, ok := c.imports(call, "net", "time")
	if !ok {
		return nil
	}
	dialer := fmt.Sprintf("&%s.Dialer{Timeout: %s}, ", names[0], timeout(names[1], fixTimeout))
	edits = append(edits,
		analysis.TextEdit{Pos: sel.Sel.Pos(), End: sel.Sel.End(), NewText: []byte("DialWithDialer")},
		analysis.TextEdit{Pos: call.Lparen + 1, End: call.Lparen + 1, NewText: []byte(dialer)},
	)
	return []analysis.SuggestedFix{{Message: "use tls.DialWithDialer with a 10s Dialer.Timeout", TextEdits: edits}}
}

// addTimeoutField adds `Timeout: 10 * time.Second` to a keyed struct literal.
func (c *checker) addTimeoutField(lit *ast.CompositeLit) []analysis.SuggestedFix {
	for _, el := range lit.Elts {
		if _, ok := el.(*ast.KeyValueExpr); !ok {
			return nil
		}
	}
	names, edits, ok := c.imports(lit, "time")
	if !ok {
		return nil
	}
	field := "Timeout: " + timeout(names[0], fixTimeout)
	fset := c.pass.Fset
	switch {
	case len(lit.Elts) == 0:
		edits = append(edits, analysis.TextEdit{Pos: lit.Rbrace, End: lit.Rbrace, NewText: []byte(field)})
	case fset.Position(lit.Rbrace).Line != fset.Position(lit.Elts[len(lit.Elts)-1].End()).Line:
		// Multi-line literal: a new line before the closing brace.
		tf := fset.File(lit.Rbrace)
		at := tf.LineStart(tf.Line(lit.Rbrace))
		indent := lintkit.Indent(c.pass, lit.Elts[len(lit.Elts)-1].Pos())
		edits = append(edits, analysis.TextEdit{Pos: at, End: at, NewText: []byte(indent + field + ",\n")})
	default:
		end := lit.Elts[len(lit.Elts)-1].End()
		edits = append(edits, analysis.TextEdit{Pos: end, End: end, NewText: []byte(", " + field)})
	}
	return []analysis.SuggestedFix{{Message: "set a 10s Timeout", TextEdits: edits}}
}
