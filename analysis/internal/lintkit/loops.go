package lintkit

import (
	"go/ast"
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
func OtherClauseContinues(info *types.Info, sel *ast.SelectStmt, cc *ast.CommClause) bool {
	for _, s := range sel.Body.List {
		other, ok := s.(*ast.CommClause)
		if !ok || other == cc {
			continue
		}
		if !Terminates(info, other.Body) {
			return true
		}
	}
	return false
}
