package oncepanic

import (
	"go/ast"
	"go/types"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/passes/inspect"
	"golang.org/x/tools/go/ast/inspector"

	"github.com/fb4b1dcc/pulse/analysis/internal/lintkit"
)

// Analyzer reports initialisation that caches a failure forever.
var Analyzer = &analysis.Analyzer{
	Name:     "oncepanic",
	Doc:      "report sync.Once.Do bodies that drop an init error or panic, and sync.OnceValue(s) over functions returning an error (AP-09: one failure poisons the client forever); use a retriable lazy initialiser",
	URL:      "https://github.com/fb4b1dcc/pulse/blob/main/docs/pulselint.md#oncepanic",
	Requires: []*analysis.Analyzer{inspect.Analyzer},
	Run:      run,
}

func run(pass *analysis.Pass) (any, error) {
	ins := pass.ResultOf[inspect.Analyzer].(*inspector.Inspector)
	rep := lintkit.NewReporter(pass)
	info := pass.TypesInfo
	decls := lintkit.FuncDecls(info, pass.Files)

	for cur := range ins.Root().Preorder((*ast.CallExpr)(nil)) {
		call := cur.Node().(*ast.CallExpr)
		fn := lintkit.Callee(info, call)
		switch {
		case lintkit.IsMethod(fn, "sync", "Once", "Do") && len(call.Args) == 1:
			body := bodyOf(info, decls, call.Args[0])
			if body == nil {
				continue
			}
			checkOnceBody(pass, rep, body)
		case lintkit.IsFunc(fn, "sync", "OnceValue", "OnceValues") && len(call.Args) == 1:
			sig, ok := info.TypeOf(call.Args[0]).Underlying().(*types.Signature)
			if !ok || sig.Results().Len() == 0 {
				continue
			}
			if !lintkit.IsErrorType(sig.Results().At(sig.Results().Len() - 1).Type()) {
				continue
			}
			// Only initialisation that can fail transiently: it connects or
			// does I/O. A cached marshalling error is deterministic anyway.
			if body := bodyOf(info, decls, call.Args[0]); body != nil {
				if !connects(info, body) {
					continue
				}
			} else if wrapped, ok := lintkit.ObjectOf(info, call.Args[0]).(*types.Func); !ok || !creator(wrapped) {
				continue
			}
			rep.Reportf(call.Pos(), "sync.%s caches the first error forever: a dependency that is down at the first call stays failed for the life of the process (AP-09, INC-2022-418; the seed's own fix has this flaw); use a retriable lazy initialiser that shares one attempt among callers and retries a failure with back-off", fn.Name())
		}
	}
	rep.Flush()
	return nil, nil
}

// bodyOf returns the body of a function literal or of a function of this
// package named by e.
func bodyOf(info *types.Info, decls map[*types.Func]*ast.FuncDecl, e ast.Expr) *ast.BlockStmt {
	switch x := ast.Unparen(e).(type) {
	case *ast.FuncLit:
		return x.Body
	case *ast.Ident, *ast.SelectorExpr:
		if fn, ok := lintkit.ObjectOf(info, x).(*types.Func); ok {
			if d := decls[fn]; d != nil {
				return d.Body
			}
		}
	}
	return nil
}

func checkOnceBody(pass *analysis.Pass, rep *lintkit.Reporter, body *ast.BlockStmt) {
	info := pass.TypesInfo
	// A panic matters when the body creates a client or connection that
	// can fail for a transient reason; a panic on a broken invariant while
	// building a static table is a programming error either way.
	inits := connects(info, body)
	ast.Inspect(body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncLit:
			return false // runs later, or recovers: not this body's control flow
		case *ast.AssignStmt:
			if len(n.Rhs) != 1 || len(n.Lhs) < 2 {
				return true
			}
			call, ok := ast.Unparen(n.Rhs[0]).(*ast.CallExpr)
			if !ok {
				return true
			}
			tup, ok := info.TypeOf(call).(*types.Tuple)
			if !ok || tup.Len() != len(n.Lhs) || !lintkit.IsErrorType(tup.At(tup.Len()-1).Type()) {
				return true
			}
			if id, ok := n.Lhs[len(n.Lhs)-1].(*ast.Ident); ok && id.Name == "_" && keepsValue(n.Lhs[:len(n.Lhs)-1]) && creator(lintkit.Callee(info, call)) {
				rep.Reportf(id.Pos(), "error dropped inside sync.Once.Do: if this first attempt fails, the once is spent anyway and every later caller gets a nil client or connection for the life of the process (AP-09, INC-2022-418); return the error and retry with a retriable lazy initialiser")
			}
		case *ast.CallExpr:
			if inits && isPanic(info, n) {
				rep.Reportf(n.Pos(), "panic inside sync.Once.Do: Do counts a panicking function as done, so after one failure every later caller gets the zero value forever and cannot recover (AP-09, INC-2022-418, INC-2023-093); return an error and retry with a retriable lazy initialiser")
			}
		}
		return true
	})
}

// keepsValue reports whether any of the left-hand sides stores the value.
func keepsValue(lhs []ast.Expr) bool {
	for _, l := range lhs {
		if id, ok := l.(*ast.Ident); !ok || id.Name != "_" {
			return true
		}
	}
	return false
}

func isPanic(info *types.Info, call *ast.CallExpr) bool {
	if id, ok := ast.Unparen(call.Fun).(*ast.Ident); ok {
		if b, ok := info.Uses[id].(*types.Builtin); ok && b.Name() == "panic" {
			return true
		}
	}
	fn := lintkit.Callee(info, call)
	return lintkit.IsFunc(fn, "log", "Panic", "Panicf", "Panicln") ||
		lintkit.IsMethod(fn, "log", "Logger", "Panic", "Panicf", "Panicln")
}

// clientWords name the things AP-09 is about: clients and connections.
var clientWords = map[string]bool{
	"client": true, "conn": true, "connection": true, "pool": true, "db": true,
	"session": true, "channel": true, "stub": true, "producer": true, "consumer": true,
	"publisher": true, "subscriber": true, "cluster": true, "transport": true, "dialer": true,
}

// creator reports whether fn creates a client or connection and can fail:
// it returns (T, error) and is named Dial*/Connect*/Open*, or T's type name
// says client, connection, pool, session…
func creator(fn *types.Func) bool {
	if fn == nil {
		return false
	}
	sig, ok := fn.Type().(*types.Signature)
	if !ok || sig.Results().Len() < 2 || !lintkit.IsErrorType(sig.Results().At(sig.Results().Len()-1).Type()) {
		return false
	}
	if w := lintkit.Words(fn.Name()); len(w) > 0 && (w[0] == "dial" || w[0] == "connect" || w[0] == "open") {
		return true
	}
	t := sig.Results().At(0).Type()
	if p, ok := types.Unalias(t).(*types.Pointer); ok {
		t = p.Elem()
	}
	if n, ok := types.Unalias(t).(*types.Named); ok {
		for _, w := range lintkit.Words(n.Obj().Name()) {
			if clientWords[w] {
				return true
			}
		}
	}
	return false
}

// ioPkgs are packages whose calls talk to the network, the file system or
// another process: their failures are often transient.
var ioPkgs = map[string]bool{
	"net": true, "net/http": true, "crypto/tls": true, "database/sql": true,
	"os/exec": true, "google.golang.org/grpc": true,
}

// connects reports whether body (not nested closures) creates a client or
// connection or does network, database, file or process I/O.
func connects(info *types.Info, body *ast.BlockStmt) bool {
	found := false
	ast.Inspect(body, func(n ast.Node) bool {
		if found {
			return false
		}
		switch n := n.(type) {
		case *ast.FuncLit:
			return false
		case *ast.CallExpr:
			fn := lintkit.Callee(info, n)
			if fn == nil {
				return true
			}
			if creator(fn) || (fn.Pkg() != nil && ioPkgs[fn.Pkg().Path()]) ||
				lintkit.IsFunc(fn, "os", "Open", "OpenFile", "ReadFile", "ReadDir") {
				found = true
			}
		}
		return true
	})
	return found
}
