package fixedinterval

import (
	"go/ast"
	"go/constant"
	"go/types"
	"strings"
	"time"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/passes/inspect"
	"golang.org/x/tools/go/ast/edge"
	"golang.org/x/tools/go/ast/inspector"

	"github.com/fb4b1dcc/pulse/analysis/internal/lintkit"
)

// Analyzer reports hard-coded heartbeat intervals and health timeouts.
var Analyzer = &analysis.Analyzer{
	Name:     "fixedinterval",
	Doc:      "report constant ticker intervals (without jitter) and constant timeouts in heartbeat/health/probe functions (AP-01, AP-10: static thresholds and lockstep heartbeat storms); take them from configuration, add jitter, derive timeouts from RTT",
	URL:      "https://github.com/fb4b1dcc/pulse/blob/main/docs/pulselint.md#fixedinterval",
	Requires: []*analysis.Analyzer{inspect.Analyzer},
	Run:      run,
}

type finding struct {
	arg      ast.Expr
	interval bool
	what     string
}

func run(pass *analysis.Pass) (any, error) {
	ins := pass.ResultOf[inspect.Analyzer].(*inspector.Inspector)
	rep := lintkit.NewReporter(pass)
	info := pass.TypesInfo
	for cur := range ins.Root().Preorder((*ast.FuncDecl)(nil)) {
		fd := cur.Node().(*ast.FuncDecl)
		if fd.Body == nil || strings.HasSuffix(pass.Fset.Position(fd.Pos()).Filename, "_test.go") {
			continue
		}
		if !lintkit.HealthLike(fd.Name.Name, lintkit.RecvTypeName(fd)) {
			continue
		}
		jitter := false
		var found []finding
		for c := range cur.Preorder((*ast.Ident)(nil), (*ast.CallExpr)(nil), (*ast.CompositeLit)(nil)) {
			switch n := c.Node().(type) {
			case *ast.Ident:
				for _, w := range lintkit.Words(n.Name) {
					if w == "jitter" || w == "jittered" || w == "splay" {
						jitter = true
					}
				}
			case *ast.CallExpr:
				fn := lintkit.Callee(info, n)
				if fn != nil && fn.Pkg() != nil && (fn.Pkg().Path() == "math/rand" || fn.Pkg().Path() == "math/rand/v2") {
					jitter = true
				}
				if f, ok := durationArg(fn, n); ok && !(lintkit.IsFunc(fn, "time", "After") && isWait(c)) && !placeholder(info, cur, c) {
					found = append(found, f)
				}
			case *ast.CompositeLit:
				t := info.TypeOf(n)
				if !lintkit.IsNamed(t, "net/http", "Client") && !lintkit.IsNamed(t, "net", "Dialer") {
					continue
				}
				for _, el := range n.Elts {
					if kv, ok := el.(*ast.KeyValueExpr); ok {
						if id, ok := kv.Key.(*ast.Ident); ok && id.Name == "Timeout" {
							found = append(found, finding{arg: kv.Value, what: types.TypeString(t, func(p *types.Package) string { return p.Name() }) + ".Timeout"})
						}
					}
				}
			}
		}
		for _, f := range found {
			d, ok := constDuration(info, f.arg)
			if !ok {
				continue
			}
			switch {
			case f.interval && !jitter:
				rep.Reportf(f.arg.Pos(), "%s beats on a hard-coded %v interval (%s) with no jitter: instances that restart together beat in lockstep, a storm at the monitor, and changing the interval needs a rebuild (AP-10, INC-2021-277, INC-2023-166); take it from configuration and add random jitter", fd.Name.Name, d, f.what)
			case !f.interval:
				rep.Reportf(f.arg.Pos(), "%s uses a hard-coded %v timeout (%s): when RTT grows (a cross-DC hop went from 20 ms to 420 ms) a fixed threshold drops healthy instances in bulk (AP-01, INC-2023-0891); take it from configuration or derive it from measured RTT", fd.Name.Name, d, f.what)
			}
		}
	}
	rep.Flush()
	return nil, nil
}

// durationArg picks the duration argument of the calls that set an
// interval or a timeout.
func durationArg(fn *types.Func, call *ast.CallExpr) (finding, bool) {
	arg := func(i int, interval bool, what string) (finding, bool) {
		if len(call.Args) <= i {
			return finding{}, false
		}
		return finding{arg: call.Args[i], interval: interval, what: what}, true
	}
	switch {
	case lintkit.IsFunc(fn, "time", "NewTicker", "Tick"):
		return arg(0, true, "time."+fn.Name())
	case lintkit.IsMethod(fn, "time", "Ticker", "Reset"):
		return arg(0, true, "Ticker.Reset")
	case lintkit.IsMethod(fn, "time", "Timer", "Reset"):
		// A timer re-armed with a constant is a schedule.
		return arg(0, true, "Timer.Reset")
	case lintkit.IsFunc(fn, "time", "NewTimer", "After", "AfterFunc"):
		return arg(0, false, "time."+fn.Name())
	case lintkit.IsFunc(fn, "context", "WithTimeout"):
		return arg(1, false, "context.WithTimeout")
	}
	return finding{}, false
}

// placeholder reports whether the time.NewTimer/NewTicker call at c only
// creates the value: the variable it is assigned to is later Reset with a
// duration that is not a constant (go-redis creates `time.NewTimer(time.
// Minute)`, stops it, and arms it with the configured interval).
func placeholder(info *types.Info, fn, c inspector.Cursor) bool {
	call := c.Node().(*ast.CallExpr)
	if !lintkit.IsFunc(lintkit.Callee(info, call), "time", "NewTimer", "NewTicker") {
		return false
	}
	var v types.Object
	switch c.ParentEdgeKind() {
	case edge.AssignStmt_Rhs:
		as := c.Parent().Node().(*ast.AssignStmt)
		if len(as.Lhs) == len(as.Rhs) {
			v = lintkit.ObjectOf(info, as.Lhs[c.ParentEdgeIndex()])
		}
	case edge.ValueSpec_Values:
		vs := c.Parent().Node().(*ast.ValueSpec)
		if len(vs.Names) == len(vs.Values) {
			v = info.Defs[vs.Names[c.ParentEdgeIndex()]]
		}
	}
	if v == nil {
		return false
	}
	for rc := range fn.Preorder((*ast.CallExpr)(nil)) {
		rcall := rc.Node().(*ast.CallExpr)
		sel, ok := ast.Unparen(rcall.Fun).(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "Reset" || len(rcall.Args) != 1 || lintkit.ObjectOf(info, sel.X) != v {
			continue
		}
		if tv, ok := info.Types[rcall.Args[0]]; ok && tv.Value == nil {
			return true
		}
	}
	return false
}

// isWait reports whether the time.After call at cur only waits (a bare
// receive, or a select case with an empty body): a delay such as a retry
// wait, not a timeout and not the beat schedule itself.
func isWait(cur inspector.Cursor) bool {
	if cur.ParentEdgeKind() != edge.UnaryExpr_X {
		return false
	}
	rx := cur.Parent()
	if cc, _, ok := lintkit.SelectCommClause(rx); ok {
		return len(cc.Body) == 0
	}
	return rx.ParentEdgeKind() == edge.ExprStmt_X
}

func constDuration(info *types.Info, e ast.Expr) (time.Duration, bool) {
	tv, ok := info.Types[e]
	if !ok || tv.Value == nil {
		return 0, false
	}
	v, ok := constant.Int64Val(constant.ToInt(tv.Value))
	if !ok || v <= 0 {
		return 0, false
	}
	return time.Duration(v), true
}
