package lintkit

import (
	"go/ast"
	"go/token"
	"go/types"
)

// Terminates reports whether executing the statement list certainly leaves
// the enclosing loop: a return, a goto, a labeled break or continue (which
// in a select or switch nested in a loop targets an outer statement), a
// panic, or a call of os.Exit / log.Fatal* / runtime.Goexit, at the top
// level of the list or in both arms of an if/else.
func Terminates(info *types.Info, list []ast.Stmt) bool {
	for _, s := range list {
		if terminatingStmt(info, s) {
			return true
		}
	}
	return false
}

func terminatingStmt(info *types.Info, s ast.Stmt) bool {
	switch s := s.(type) {
	case *ast.ReturnStmt:
		return true
	case *ast.BranchStmt:
		return s.Tok == token.GOTO || (s.Label != nil && (s.Tok == token.BREAK || s.Tok == token.CONTINUE))
	case *ast.BlockStmt:
		return Terminates(info, s.List)
	case *ast.IfStmt:
		if s.Else == nil {
			return false
		}
		return Terminates(info, s.Body.List) && terminatingStmt(info, s.Else)
	case *ast.ExprStmt:
		call, ok := ast.Unparen(s.X).(*ast.CallExpr)
		if !ok {
			return false
		}
		return IsExitCall(info, call)
	case *ast.LabeledStmt:
		return terminatingStmt(info, s.Stmt)
	}
	return false
}

// IsExitCall reports whether call never returns: panic, os.Exit,
// runtime.Goexit, log.Fatal*, log.Panic*, (*log.Logger).Fatal*/Panic* and
// (testing.TB).Fatal*/Skip*/FailNow.
func IsExitCall(info *types.Info, call *ast.CallExpr) bool {
	if id, ok := ast.Unparen(call.Fun).(*ast.Ident); ok {
		if b, ok := info.Uses[id].(*types.Builtin); ok && b.Name() == "panic" {
			return true
		}
	}
	fn := Callee(info, call)
	if fn == nil {
		return false
	}
	switch {
	case IsFunc(fn, "os", "Exit"), IsFunc(fn, "runtime", "Goexit"),
		IsFunc(fn, "log", "Fatal", "Fatalf", "Fatalln", "Panic", "Panicf", "Panicln"),
		IsMethod(fn, "log", "Logger", "Fatal", "Fatalf", "Fatalln", "Panic", "Panicf", "Panicln"),
		IsMethod(fn, "testing", "common", "Fatal", "Fatalf", "FailNow", "Skip", "Skipf", "SkipNow"):
		return true
	}
	return false
}
