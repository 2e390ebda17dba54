package lintkit

import (
	"go/ast"
	"go/token"
	"go/types"
)

// SoleValue returns the expression a local variable is initialised with
// when, inside root, that is its only assignment and its address is never
// taken: the variable then holds exactly that value everywhere. For a
// multi-value assignment (`req, err := http.NewRequest(...)`) it returns
// the call. zero is true for `var v T` with no value.
func SoleValue(info *types.Info, root ast.Node, v *types.Var) (value ast.Expr, zero, ok bool) {
	if root == nil || v == nil {
		return nil, false, false
	}
	count := 0
	escaped := false
	ast.Inspect(root, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			for i, l := range n.Lhs {
				id, ok := ast.Unparen(l).(*ast.Ident)
				if !ok || info.ObjectOf(id) != v {
					continue
				}
				count++
				if len(n.Rhs) == len(n.Lhs) {
					value = n.Rhs[i]
				} else if len(n.Rhs) == 1 {
					value = n.Rhs[0]
				}
				if n.Tok != token.DEFINE && n.Tok != token.ASSIGN {
					escaped = true // op-assign
				}
			}
		case *ast.ValueSpec:
			for i, id := range n.Names {
				if info.Defs[id] != v {
					continue
				}
				count++
				switch {
				case len(n.Values) == 0:
					zero = true
				case len(n.Values) == len(n.Names):
					value = n.Values[i]
				case len(n.Values) == 1:
					value = n.Values[0]
				}
			}
		case *ast.UnaryExpr:
			if id, ok := ast.Unparen(n.X).(*ast.Ident); ok && n.Op == token.AND && info.Uses[id] == v {
				escaped = true
			}
		case *ast.RangeStmt:
			for _, e := range []ast.Expr{n.Key, n.Value} {
				if id, ok := e.(*ast.Ident); ok && info.ObjectOf(id) == v {
					escaped = true
				}
			}
		}
		return true
	})
	if count != 1 || escaped {
		return nil, false, false
	}
	return value, zero, true
}

// FieldAssigned reports whether root assigns v.<one of fields> anywhere.
func FieldAssigned(info *types.Info, root ast.Node, v *types.Var, fields ...string) bool {
	found := false
	ast.Inspect(root, func(n ast.Node) bool {
		as, ok := n.(*ast.AssignStmt)
		if !ok || found {
			return !found
		}
		for _, l := range as.Lhs {
			sel, ok := ast.Unparen(l).(*ast.SelectorExpr)
			if !ok {
				continue
			}
			id, ok := ast.Unparen(sel.X).(*ast.Ident)
			if !ok || info.Uses[id] != v {
				continue
			}
			for _, f := range fields {
				if sel.Sel.Name == f {
					found = true
				}
			}
		}
		return true
	})
	return found
}

// CompositeLit returns the composite literal e denotes, looking through
// parentheses and a leading &.
func CompositeLit(e ast.Expr) (*ast.CompositeLit, bool) {
	e = ast.Unparen(e)
	if u, ok := e.(*ast.UnaryExpr); ok && u.Op == token.AND {
		e = ast.Unparen(u.X)
	}
	lit, ok := e.(*ast.CompositeLit)
	return lit, ok
}

// HasKey reports whether a keyed struct literal sets one of the fields.
func HasKey(lit *ast.CompositeLit, fields ...string) bool {
	for _, el := range lit.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			return true // positional literal: every field is set
		}
		if id, ok := kv.Key.(*ast.Ident); ok {
			for _, f := range fields {
				if id.Name == f {
					return true
				}
			}
		}
	}
	return false
}
