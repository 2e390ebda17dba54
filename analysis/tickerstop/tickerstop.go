package tickerstop

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/passes/inspect"
	"golang.org/x/tools/go/ast/edge"
	"golang.org/x/tools/go/ast/inspector"

	"github.com/fb4b1dcc/pulse/analysis/internal/lintkit"
)

// Analyzer reports unstopped tickers/timers and time-driven loops without an exit.
var Analyzer = &analysis.Analyzer{
	Name:     "tickerstop",
	Doc:      "report time.Ticker/Timer values never stopped and ticker/select loops with no exit path (AP-06: goroutine and ticker leak); select on ctx.Done() and return, defer t.Stop()",
	URL:      "https://github.com/fb4b1dcc/pulse/blob/main/docs/pulselint.md#tickerstop",
	Requires: []*analysis.Analyzer{inspect.Analyzer},
	Run:      run,
}

type checker struct {
	pass *analysis.Pass
	ins  *inspector.Inspector
	rep  *lintkit.Reporter
	// fieldUse caches, per struct field, whether the package stops it or
	// lets it escape.
	fieldUse map[*types.Var]use
}

type use struct{ stopped, escapes, received bool }

func run(pass *analysis.Pass) (any, error) {
	c := &checker{
		pass:     pass,
		ins:      pass.ResultOf[inspect.Analyzer].(*inspector.Inspector),
		rep:      lintkit.NewReporter(pass),
		fieldUse: make(map[*types.Var]use),
	}
	for cur := range c.ins.Root().Preorder((*ast.CallExpr)(nil), (*ast.ForStmt)(nil), (*ast.RangeStmt)(nil)) {
		switch n := cur.Node().(type) {
		case *ast.CallExpr:
			c.checkNew(cur, n)
		case *ast.ForStmt, *ast.RangeStmt:
			c.checkLoop(cur)
		}
	}
	c.rep.Flush()
	return nil, nil
}

func (c *checker) checkNew(cur inspector.Cursor, call *ast.CallExpr) {
	fn := lintkit.Callee(c.pass.TypesInfo, call)
	var kind string
	switch {
	case lintkit.IsFunc(fn, "time", "NewTicker"):
		kind = "ticker"
	case lintkit.IsFunc(fn, "time", "NewTimer"):
		kind = "timer"
	default:
		return
	}
	info := c.pass.TypesInfo
	p := cur.Parent()
	switch cur.ParentEdgeKind() {
	case edge.SelectorExpr_X:
		if kind == "ticker" && p.Node().(*ast.SelectorExpr).Sel.Name == "C" {
			c.rep.Reportf(call.Pos(), "time.NewTicker(...).C can never be stopped: the ticker fires for the life of the process and, below Go 1.23, is never collected (AP-06); keep the *time.Ticker and defer its Stop")
		}
		return
	case edge.ExprStmt_X:
		if kind == "ticker" {
			c.rep.Reportf(call.Pos(), "time.NewTicker result is discarded, so the ticker can never be stopped (AP-06); keep it and defer its Stop")
		}
		return
	case edge.AssignStmt_Rhs, edge.ValueSpec_Values:
		lhs := lhsOf(p.Node(), cur.ParentEdgeIndex())
		switch lhs := lhs.(type) {
		case *ast.Ident:
			v, ok := info.ObjectOf(lhs).(*types.Var)
			if !ok || v.Parent() == nil || v.Parent() == c.pass.Pkg.Scope() {
				return // package-level or blank: not ours to judge
			}
			u := c.localUse(cur, v)
			if u.stopped || u.escapes || (kind == "timer" && u.received) {
				return
			}
			c.report(call, kind, c.deferFix(cur, p.Node(), lhs))
		case *ast.SelectorExpr:
			if f := fieldOf(info, lhs.Sel); f != nil {
				c.checkField(call, kind, f)
			}
		}
	case edge.KeyValueExpr_Value:
		if key, ok := p.Node().(*ast.KeyValueExpr).Key.(*ast.Ident); ok {
			if f := fieldOf(info, key); f != nil {
				c.checkField(call, kind, f)
			}
		}
	}
}

func (c *checker) report(call *ast.CallExpr, kind string, fixes []analysis.SuggestedFix) {
	msg := "time.NewTicker result is never stopped: the ticker keeps firing after its loop is gone and, below Go 1.23, is never collected; an unstoppable heartbeat goroutine has no owner (AP-06, INC-2021-089); defer its Stop where it is created or stop it in the owner's Close"
	if kind == "timer" {
		msg = "time.NewTimer result is never stopped: on an early return the timer stays pending until it fires (below Go 1.23 it is not collected before that, INC-2023-1152); defer its Stop"
	}
	c.rep.Report(analysis.Diagnostic{Pos: call.Pos(), End: call.End(), Message: msg, SuggestedFixes: fixes})
}

func (c *checker) checkField(call *ast.CallExpr, kind string, f *types.Var) {
	if f.Exported() {
		return // another package may stop it
	}
	u, ok := c.fieldUse[f]
	if !ok {
		for cur := range c.ins.Root().Preorder((*ast.SelectorExpr)(nil)) {
			sel := cur.Node().(*ast.SelectorExpr)
			if c.pass.TypesInfo.Uses[sel.Sel] != f {
				continue
			}
			merge(&u, classify(c.pass.TypesInfo, cur))
		}
		c.fieldUse[f] = u
	}
	if u.stopped || u.escapes || (kind == "timer" && u.received) {
		return
	}
	c.report(call, kind, nil)
}

// localUse classifies every use of the local variable v in the outermost
// function containing cur (closures included).
func (c *checker) localUse(cur inspector.Cursor, v *types.Var) use {
	var outer inspector.Cursor
	for f := range cur.Enclosing((*ast.FuncDecl)(nil), (*ast.FuncLit)(nil)) {
		outer = f
	}
	var u use
	if !outer.Valid() {
		u.escapes = true
		return u
	}
	for ic := range outer.Preorder((*ast.Ident)(nil)) {
		if c.pass.TypesInfo.Uses[ic.Node().(*ast.Ident)] != v {
			continue
		}
		merge(&u, classify(c.pass.TypesInfo, ic))
	}
	return u
}

func merge(u *use, v use) {
	u.stopped = u.stopped || v.stopped
	u.escapes = u.escapes || v.escapes
	u.received = u.received || v.received
}

// classify looks at how one occurrence of the ticker/timer (an identifier,
// or a field selector) is used.
func classify(info *types.Info, cur inspector.Cursor) use {
	p := cur.Parent()
	switch cur.ParentEdgeKind() {
	case edge.SelectorExpr_X:
		switch p.Node().(*ast.SelectorExpr).Sel.Name {
		case "Stop":
			return use{stopped: true}
		case "C":
			// `<-t.C` as a plain statement (or assignment) waits for the
			// timer to fire; in a select it may be abandoned.
			if p.ParentEdgeKind() == edge.UnaryExpr_X {
				rx := p.Parent()
				cc, _, inSelect := lintkit.SelectCommClause(rx)
				if !inSelect {
					return use{received: true}
				}
				// `case <-t.C: break out` as the loop's only way out: the
				// timer has fired whenever the loop is left.
				if loop, ok := lintkit.EnclosingLoop(rx); ok && lintkit.Terminates(info, cc.Body) && !hasExit(info, loop, cc) {
					return use{received: true}
				}
			}
			return use{}
		default:
			return use{}
		}
	case edge.AssignStmt_Lhs:
		return use{} // reassigned, not escaping
	case edge.SelectorExpr_Sel:
		// A field selector x.f: classify how the selector itself is used.
		return classify(info, p)
	}
	return use{escapes: true}
}

func lhsOf(n ast.Node, i int) ast.Expr {
	switch n := n.(type) {
	case *ast.AssignStmt:
		if len(n.Lhs) == len(n.Rhs) {
			return n.Lhs[i]
		}
	case *ast.ValueSpec:
		if len(n.Names) == len(n.Values) {
			return n.Names[i]
		}
	}
	return nil
}

func fieldOf(info *types.Info, id *ast.Ident) *types.Var {
	v, ok := info.ObjectOf(id).(*types.Var)
	if !ok || !v.IsField() {
		return nil
	}
	return v
}

// deferFix inserts `defer t.Stop()` after `t := time.NewTicker(d)` when the
// statement sits directly in a block outside any loop, where the defer runs
// exactly once when the function returns.
func (c *checker) deferFix(cur inspector.Cursor, stmt ast.Node, id *ast.Ident) []analysis.SuggestedFix {
	as, ok := stmt.(*ast.AssignStmt)
	if !ok || as.Tok != token.DEFINE || len(as.Lhs) != 1 {
		return nil
	}
	stmtCur := cur.Parent()
	switch stmtCur.ParentEdgeKind() {
	case edge.BlockStmt_List, edge.CaseClause_Body, edge.CommClause_Body:
	default:
		return nil
	}
	if _, inLoop := lintkit.EnclosingLoop(stmtCur); inLoop {
		return nil
	}
	// Insert a line after the statement's last line, past any trailing comment.
	tf := c.pass.Fset.File(as.End())
	line := tf.Line(as.End())
	if line >= tf.LineCount() {
		return nil
	}
	at := tf.LineStart(line + 1)
	text := fmt.Sprintf("%sdefer %s.Stop()\n", lintkit.Indent(c.pass, as.Pos()), id.Name)
	return []analysis.SuggestedFix{{
		Message:   fmt.Sprintf("defer %s.Stop()", id.Name),
		TextEdits: []analysis.TextEdit{{Pos: at, End: at, NewText: []byte(text)}},
	}}
}

// checkLoop reports a time-driven loop that nothing can stop.
func (c *checker) checkLoop(cur inspector.Cursor) {
	info := c.pass.TypesInfo
	var body *ast.BlockStmt
	switch n := cur.Node().(type) {
	case *ast.ForStmt:
		if n.Cond != nil || !receivesTime(info, cur) {
			return
		}
		body = n.Body
	case *ast.RangeStmt:
		if !isTimeChan(info, n.X) {
			return
		}
		body = n.Body
	}
	if body == nil || hasExit(info, cur, nil) {
		return
	}
	c.rep.Reportf(cur.Node().Pos(), "this ticker loop has no exit path (no return, no break out of the loop, no ctx.Done() case that returns): its goroutine and ticker live until the process dies and cannot be stopped on shutdown or reconfiguration (AP-06, INC-2021-089); select on ctx.Done() or a done channel and return")
}

// isTimeChan reports whether e is a ticker's or timer's C, or a time.Tick
// or time.After channel.
func isTimeChan(info *types.Info, e ast.Expr) bool {
	switch e := ast.Unparen(e).(type) {
	case *ast.SelectorExpr:
		if e.Sel.Name != "C" {
			return false
		}
		t := info.TypeOf(e.X)
		return lintkit.IsNamed(t, "time", "Ticker") || lintkit.IsNamed(t, "time", "Timer")
	case *ast.CallExpr:
		return lintkit.IsFunc(lintkit.Callee(info, e), "time", "Tick", "After")
	}
	return false
}

// receivesTime reports whether the loop at cur receives from a time channel
// in its own body (not in a nested loop or closure).
func receivesTime(info *types.Info, loop inspector.Cursor) bool {
	found := false
	loop.Inspect(nil, func(c inspector.Cursor) bool {
		if found {
			return false
		}
		switch n := c.Node().(type) {
		case *ast.FuncLit:
			return false
		case *ast.ForStmt, *ast.RangeStmt:
			return c == loop
		case *ast.UnaryExpr:
			if n.Op == token.ARROW && isTimeChan(info, n.X) {
				found = true
			}
		}
		return true
	})
	return found
}

// hasExit reports whether the loop body can leave the loop: a return, a
// goto, a break that targets this loop or an outer statement, a labeled
// continue of an outer loop, or a call that ends the goroutine or process.
// The subtree skip (if any) is not searched.
func hasExit(info *types.Info, loop inspector.Cursor, skip ast.Node) bool {
	loopNode := loop.Node()
	var label *types.Label
	if ls, ok := loop.Parent().Node().(*ast.LabeledStmt); ok {
		label, _ = info.Defs[ls.Label].(*types.Label)
	}
	found := false
	loop.Inspect(nil, func(c inspector.Cursor) bool {
		if found {
			return false
		}
		if skip != nil && c.Node() == skip {
			return false
		}
		switch n := c.Node().(type) {
		case *ast.FuncLit:
			return false
		case *ast.ReturnStmt:
			found = true
		case *ast.CallExpr:
			if lintkit.IsExitCall(info, n) {
				found = true
			}
		case *ast.BranchStmt:
			switch {
			case n.Tok == token.GOTO:
				found = true
			case n.Label != nil:
				l, _ := info.Uses[n.Label].(*types.Label)
				inside := l != nil && l.Pos() > loopNode.Pos() && l.Pos() < loopNode.End()
				switch {
				case l == label:
					found = n.Tok == token.BREAK
				case !inside:
					found = true // break/continue of an outer statement
				}
			case n.Tok == token.BREAK:
				found = breakTarget(c) == loopNode
			}
		}
		return true
	})
	return found
}

// breakTarget returns the statement an unlabeled break at cur leaves.
func breakTarget(cur inspector.Cursor) ast.Node {
	for p := range cur.Enclosing((*ast.ForStmt)(nil), (*ast.RangeStmt)(nil), (*ast.SwitchStmt)(nil), (*ast.TypeSwitchStmt)(nil), (*ast.SelectStmt)(nil), (*ast.FuncLit)(nil)) {
		return p.Node()
	}
	return nil
}
