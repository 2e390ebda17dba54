package timeafter

import (
	"go/ast"
	"go/token"
	"go/types"
	"strings"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/passes/inspect"
	"golang.org/x/tools/go/ast/edge"
	"golang.org/x/tools/go/ast/inspector"

	"github.com/fb4b1dcc/pulse/analysis/internal/lintkit"
)

// Analyzer reports time.After / time.Tick evaluated inside loops.
var Analyzer = &analysis.Analyzer{
	Name:     "timeafter",
	Doc:      "report time.After/time.Tick in loops (AP-03: timer leak before Go 1.23, a timer per iteration after); use one time.Timer with Stop/Reset or a context deadline",
	URL:      "https://github.com/fb4b1dcc/pulse/blob/main/docs/pulselint.md#timeafter",
	Requires: []*analysis.Analyzer{inspect.Analyzer},
	Run:      run,
}

func run(pass *analysis.Pass) (any, error) {
	ins := pass.ResultOf[inspect.Analyzer].(*inspector.Inspector)
	rep := lintkit.NewReporter(pass)
	ver := lintkit.GoVersion(pass)
	modern := lintkit.AtLeast(ver, "go1.23")
	verText := strings.TrimPrefix(ver, "go")
	if verText == "" {
		verText = "unknown"
	}

	for cur := range ins.Root().Preorder((*ast.CallExpr)(nil)) {
		call := cur.Node().(*ast.CallExpr)
		fn := lintkit.Callee(pass.TypesInfo, call)
		switch {
		case lintkit.IsFunc(fn, "time", "Tick"):
			if _, ok := lintkit.EnclosingLoop(cur); !ok {
				continue
			}
			if modern {
				rep.Reportf(call.Pos(), "time.Tick in a loop starts a new ticker every iteration that is never stopped and restarts the period each time (module go %s collects unreferenced tickers, but each iteration still allocates one); create one time.NewTicker before the loop and defer its Stop", verText)
			} else {
				rep.Reportf(call.Pos(), "time.Tick in a loop leaks a ticker every iteration: it is never stopped and, below Go 1.23 (module go %s), never collected; create one time.NewTicker before the loop and defer its Stop", verText)
			}
		case lintkit.IsFunc(fn, "time", "After"):
			loop, ok := lintkit.EnclosingLoop(cur)
			if !ok || !abandoned(pass.TypesInfo, cur, loop) {
				continue
			}
			if modern {
				rep.Reportf(call.Pos(), "time.After in a loop allocates a new timer and channel every iteration and abandons it whenever another case wins (module go %s collects abandoned timers, but a busy heartbeat loop churns the heap); create one time.NewTimer before the loop, Stop it on exit and Reset it per iteration, or use a context deadline", verText)
			} else {
				rep.Reportf(call.Pos(), "time.After in a loop leaks a timer whenever another case wins: below Go 1.23 (module go %s) an unfired timer is not collected until it fires, so a loop that receives faster than its timeout piles up timers (INC-2023-1152); create one time.NewTimer before the loop, Stop it on exit and Reset it per iteration, or use a context deadline", verText)
			}
		}
	}
	rep.Flush()
	return nil, nil
}

// abandoned reports whether the channel of the time.After call at cur can
// be abandoned while the loop goes on: it is received in a select (directly,
// or through a variable assigned in the loop) that has another clause which
// continues the loop.
func abandoned(info *types.Info, cur, loop inspector.Cursor) bool {
	switch p := cur.Parent(); cur.ParentEdgeKind() {
	case edge.UnaryExpr_X:
		if u := p.Node().(*ast.UnaryExpr); u.Op == token.ARROW {
			if cc, sel, ok := lintkit.SelectCommClause(p); ok {
				return abandonable(info, sel, cc)
			}
		}
		return false
	case edge.AssignStmt_Rhs, edge.ValueSpec_Values:
		var lhs ast.Expr
		switch n := p.Node().(type) {
		case *ast.AssignStmt:
			if len(n.Lhs) == len(n.Rhs) {
				lhs = n.Lhs[cur.ParentEdgeIndex()]
			}
		case *ast.ValueSpec:
			if len(n.Names) == len(n.Values) {
				lhs = n.Names[cur.ParentEdgeIndex()]
			}
		}
		id, ok := lhs.(*ast.Ident)
		if !ok {
			return false
		}
		obj := info.ObjectOf(id)
		if obj == nil {
			return false
		}
		// Look for `<-v` select receives of that variable in the same loop.
		for rc := range loop.Preorder((*ast.UnaryExpr)(nil)) {
			u := rc.Node().(*ast.UnaryExpr)
			if u.Op != token.ARROW {
				continue
			}
			if x, ok := ast.Unparen(u.X).(*ast.Ident); !ok || info.Uses[x] != obj {
				continue
			}
			if cc, sel, ok := lintkit.SelectCommClause(rc); ok && abandonable(info, sel, cc) {
				return true
			}
		}
	}
	return false
}

// abandonable reports whether the timer received in clause cc of sel is
// abandoned while the loop goes on. A clause with an empty body is a
// wake-up ("do the loop's work every d, or sooner when notified"), not a
// timeout: it is only reported when a default clause abandons it on every
// pass. (On etcd's version monitors and watch-victim loop the wake-up shape
// was benign; a wake-up beside a hot notification channel is missed.)
func abandonable(info *types.Info, sel *ast.SelectStmt, cc *ast.CommClause) bool {
	if len(cc.Body) == 0 {
		for _, s := range sel.Body.List {
			if c, ok := s.(*ast.CommClause); ok && c.Comm == nil {
				return true
			}
		}
		return false
	}
	return lintkit.OtherClauseContinues(info, sel, cc)
}
