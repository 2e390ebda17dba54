package lintkit

import (
	"go/ast"
	"go/token"
	"go/types"

	"golang.org/x/tools/go/ast/edge"
	"golang.org/x/tools/go/ast/inspector"
)

// EnclosingLoop returns the innermost loop that evaluates the node at cur
// on every iteration (a for statement's body, condition or post statement,
// or a range statement's body; not a range statement's operand, which is
// evaluated once). It stops at function boundaries.
func EnclosingLoop(cur inspector.Cursor) (inspector.Cursor, bool) {
	for c := cur; ; {
		p := c.Parent()
		if !p.Valid() || p.Node() == nil {
			return inspector.Cursor{}, false
		}
		switch p.Node().(type) {
		case *ast.FuncLit, *ast.FuncDecl:
			return inspector.Cursor{}, false
		case *ast.ForStmt:
			switch c.ParentEdgeKind() {
			case edge.ForStmt_Body, edge.ForStmt_Cond, edge.ForStmt_Post:
				return p, true
			}
		case *ast.RangeStmt:
			if c.ParentEdgeKind() == edge.RangeStmt_Body {
				return p, true
			}
		}
		c = p
	}
}

// EnclosingFunc returns the innermost function (declaration or literal)
// containing cur.
func EnclosingFunc(cur inspector.Cursor) (inspector.Cursor, bool) {
	for c := range cur.Enclosing((*ast.FuncDecl)(nil), (*ast.FuncLit)(nil)) {
		return c, true
	}
	return inspector.Cursor{}, false
}

// SelectCommClause returns the select clause whose communication is the
// receive at cur (cur is the `<-x` UnaryExpr), if any.
func SelectCommClause(cur inspector.Cursor) (*ast.CommClause, *ast.SelectStmt, bool) {
	c := cur
	// `case <-x:` is an ExprStmt; `case v := <-x:` / `case v, ok = <-x:` an AssignStmt.
	p := c.Parent()
	switch p.Node().(type) {
	case *ast.ExprStmt, *ast.AssignStmt:
		c = p
	default:
		return nil, nil, false
	}
	if c.ParentEdgeKind() != edge.CommClause_Comm {
		return nil, nil, false
	}
	cc := c.Parent().Node().(*ast.CommClause)
	sel, ok := c.Parent().Parent().Parent().Node().(*ast.SelectStmt) // CommClause → BlockStmt → SelectStmt
	if !ok {
		return nil, nil, false
	}
	return cc, sel, true
}

// OtherClauseContinues reports whether a clause of sel other than cc can
// run and fall through to the next iteration of the enclosing loop (its
// body does not return, exit or jump out), including a default clause.
// A receive from a done channel (ctx.Done(), or a channel named done, stop,
// quit, closing, shutdown…) does not count: such a channel is closed once,
// at the end, so it can win at most once before the loop notices.
func OtherClauseContinues(info *types.Info, sel *ast.SelectStmt, cc *ast.CommClause) bool {
	for _, s := range sel.Body.List {
		other, ok := s.(*ast.CommClause)
		if !ok || other == cc {
			continue
		}
		if IsDoneReceive(other.Comm) {
			continue
		}
		if !Terminates(info, other.Body) {
			return true
		}
	}
	return false
}

var doneWords = map[string]bool{
	"done": true, "stop": true, "stopped": true, "stopping": true, "quit": true,
	"close": true, "closed": true, "closing": true, "shutdown": true, "exit": true,
	"cancel": true, "cancelled": true, "canceled": true, "die": true, "dying": true,
	"kill": true, "term": true, "terminate": true,
}

// IsDoneReceive reports whether a select communication receives from a
// shutdown signal: a call of a Done method, or a channel whose name says it
// is closed to stop something.
func IsDoneReceive(comm ast.Stmt) bool {
	var x ast.Expr
	switch c := comm.(type) {
	case *ast.ExprStmt:
		x = c.X
	case *ast.AssignStmt:
		if len(c.Rhs) == 1 {
			x = c.Rhs[0]
		}
	}
	u, ok := ast.Unparen(x).(*ast.UnaryExpr)
	if !ok || u.Op != token.ARROW {
		return false
	}
	var name string
	switch ch := ast.Unparen(u.X).(type) {
	case *ast.CallExpr:
		switch f := ast.Unparen(ch.Fun).(type) {
		case *ast.SelectorExpr:
			name = f.Sel.Name
		case *ast.Ident:
			name = f.Name
		}
		if name == "Done" {
			return true
		}
	case *ast.SelectorExpr:
		name = ch.Sel.Name
	case *ast.Ident:
		name = ch.Name
	}
	for _, w := range Words(name) {
		if doneWords[w] {
			return true
		}
	}
	return false
}
