package statusonly

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

// Analyzer reports health checks that judge by status code only.
var Analyzer = &analysis.Analyzer{
	Name:     "statusonly",
	Doc:      "report health/heartbeat/probe functions that check resp.StatusCode and never read resp.Body (AP-08: a 200 with a degraded body counts as healthy); decode the body and check its business status",
	URL:      "https://github.com/fb4b1dcc/pulse/blob/main/docs/pulselint.md#statusonly",
	Requires: []*analysis.Analyzer{inspect.Analyzer},
	Run:      run,
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
		if !lintkit.HealthFunc(pass.Pkg.Path(), fd) {
			continue
		}
		// Every *http.Response variable the function gets from a request
		// it makes itself: a response handed in (a parameter, a field) may
		// have had its body read by whoever produced it.
		var vars []*types.Var
		for ic := range cur.Preorder((*ast.Ident)(nil)) {
			v, ok := info.Defs[ic.Node().(*ast.Ident)].(*types.Var)
			if !ok || !lintkit.IsNamed(v.Type(), "net/http", "Response") {
				continue
			}
			if _, ptr := v.Type().(*types.Pointer); ptr && fromRequest(info, ic) {
				vars = append(vars, v)
			}
		}
		for _, v := range vars {
			if pos, ok := statusOnly(info, cur, v); ok {
				rep.Reportf(pos, "%s judges its target by the HTTP status alone and never reads the body: an instance answering 200 {\"code\":503,\"msg\":\"service degraded\"} counts as healthy and keeps receiving traffic (AP-08, INC-2021-155, INC-2023-226); decode the body and check its business status", fd.Name.Name)
			}
		}
	}
	rep.Flush()
	return nil, nil
}

// statusOnly reports the first status check of v when the function never
// reads v's body and never hands v to code that might.
func statusOnly(info *types.Info, fn inspector.Cursor, v *types.Var) (token.Pos, bool) {
	var status token.Pos
	for ic := range fn.Preorder((*ast.Ident)(nil)) {
		if info.Uses[ic.Node().(*ast.Ident)] != v {
			continue
		}
		switch ic.ParentEdgeKind() {
		case edge.SelectorExpr_X:
			sel := ic.Parent()
			switch sel.Node().(*ast.SelectorExpr).Sel.Name {
			case "StatusCode", "Status":
				if !status.IsValid() {
					status = sel.Node().Pos()
				}
			case "Body":
				if !closesOrDrains(info, sel) {
					return token.NoPos, false
				}
			}
		case edge.AssignStmt_Lhs:
			// reassigned by another request
		case edge.BinaryExpr_X, edge.BinaryExpr_Y:
			// resp == nil / resp != nil
		default:
			return token.NoPos, false // handed on: assume it is read there
		}
	}
	return status, status.IsValid()
}

// closesOrDrains reports whether the resp.Body selector at cur is only
// closed or copied to io.Discard.
func closesOrDrains(info *types.Info, cur inspector.Cursor) bool {
	switch cur.ParentEdgeKind() {
	case edge.SelectorExpr_X:
		return cur.Parent().Node().(*ast.SelectorExpr).Sel.Name == "Close"
	case edge.CallExpr_Args:
		call := cur.Parent().Node().(*ast.CallExpr)
		if !lintkit.IsFunc(lintkit.Callee(info, call), "io", "Copy", "CopyN") || len(call.Args) < 2 {
			return false
		}
		dst, ok := lintkit.ObjectOf(info, call.Args[0]).(*types.Var)
		return ok && dst.Pkg() != nil && dst.Pkg().Path() == "io" && dst.Name() == "Discard"
	}
	return false
}

// fromRequest reports whether the variable defined at id is assigned the
// result of an HTTP request: (*http.Client).Do/Get/Head/Post/PostForm,
// http.Get/Head/Post/PostForm or a RoundTrip.
func fromRequest(info *types.Info, id inspector.Cursor) bool {
	var rhs ast.Expr
	switch id.ParentEdgeKind() {
	case edge.AssignStmt_Lhs:
		as := id.Parent().Node().(*ast.AssignStmt)
		if len(as.Rhs) == 1 {
			rhs = as.Rhs[0]
		} else if i := id.ParentEdgeIndex(); i < len(as.Rhs) {
			rhs = as.Rhs[i]
		}
	case edge.ValueSpec_Names:
		vs := id.Parent().Node().(*ast.ValueSpec)
		if len(vs.Values) == 1 {
			rhs = vs.Values[0]
		} else if i := id.ParentEdgeIndex(); i < len(vs.Values) {
			rhs = vs.Values[i]
		}
	}
	call, ok := ast.Unparen(rhs).(*ast.CallExpr)
	if !ok {
		return false
	}
	fn := lintkit.Callee(info, call)
	return lintkit.IsMethod(fn, "net/http", "Client", "Do", "Get", "Head", "Post", "PostForm") ||
		lintkit.IsFunc(fn, "net/http", "Get", "Head", "Post", "PostForm") ||
		(fn != nil && fn.Name() == "RoundTrip")
}
