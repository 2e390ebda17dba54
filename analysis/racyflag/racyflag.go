package racyflag

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"path/filepath"
	"strings"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/passes/inspect"
	"golang.org/x/tools/go/ast/edge"
	"golang.org/x/tools/go/ast/inspector"

	"github.com/fb4b1dcc/pulse/analysis/internal/lintkit"
)

// Analyzer reports unsynchronised writes to shared package-level flags.
var Analyzer = &analysis.Analyzer{
	Name:     "racyflag",
	Doc:      "report package-level variables of basic type written without sync/atomic or a mutex while goroutines or handlers access them (AP-04: racy health flag); use atomic.Bool/atomic.Int64 or a mutex",
	URL:      "https://github.com/fb4b1dcc/pulse/blob/main/docs/pulselint.md#racyflag",
	Requires: []*analysis.Analyzer{inspect.Analyzer},
	Run:      run,
}

type access struct {
	pos        token.Pos
	write      bool
	concurrent string // why it runs concurrently, "" if not known to
	setup      bool   // in init or main
	protected  bool   // under a lock or sync.Once
}

type state struct {
	pass       *analysis.Pass
	decls      map[*types.Func]*ast.FuncDecl
	concurrent map[ast.Node]string // FuncDecl or FuncLit → reason
}

func run(pass *analysis.Pass) (any, error) {
	ins := pass.ResultOf[inspect.Analyzer].(*inspector.Inspector)
	rep := lintkit.NewReporter(pass)
	info := pass.TypesInfo
	s := &state{pass: pass, decls: lintkit.FuncDecls(info, pass.Files), concurrent: make(map[ast.Node]string)}

	tracked := make(map[*types.Var]bool)
	scope := pass.Pkg.Scope()
	for _, name := range scope.Names() {
		v, ok := scope.Lookup(name).(*types.Var)
		if !ok || name == "_" {
			continue
		}
		if b, ok := v.Type().Underlying().(*types.Basic); ok && b.Kind() != types.UnsafePointer {
			tracked[v] = true
		}
	}
	if len(tracked) == 0 {
		return nil, nil
	}

	s.findRoots(ins)
	s.propagate()

	accesses := make(map[*types.Var][]access)
	skip := make(map[*types.Var]bool) // address taken
	for cur := range ins.Root().Preorder((*ast.Ident)(nil)) {
		id := cur.Node().(*ast.Ident)
		v, ok := info.Uses[id].(*types.Var)
		if !ok || !tracked[v] || isTestFile(pass, id.Pos()) {
			continue
		}
		if cur.ParentEdgeKind() == edge.UnaryExpr_X && cur.Parent().Node().(*ast.UnaryExpr).Op == token.AND {
			skip[v] = true
			continue
		}
		accesses[v] = append(accesses[v], s.classify(cur))
	}

	for v, list := range accesses {
		if skip[v] {
			continue
		}
		var conc *access
		for i := range list {
			if list[i].concurrent != "" {
				conc = &list[i]
				break
			}
		}
		if conc == nil {
			continue
		}
		for _, a := range list {
			if !a.write || a.setup || a.protected {
				continue
			}
			why := fmt.Sprintf("%s accesses it concurrently (%s)", conc.concurrent, s.where(conc.pos))
			if a.concurrent != "" {
				why = "this write runs in " + a.concurrent
			}
			rep.Reportf(a.pos, "package-level %s %s is written without sync/atomic or a mutex and %s: readers can see a stale or torn health state and the race detector flags it (AP-04, INC-2024-0334); use atomic.Bool/atomic.Int64 or guard it with a sync.RWMutex", v.Type(), v.Name(), why)
		}
	}
	rep.Flush()
	return nil, nil
}

func isTestFile(pass *analysis.Pass, pos token.Pos) bool {
	return strings.HasSuffix(pass.Fset.Position(pos).Filename, "_test.go")
}

func (s *state) where(pos token.Pos) string {
	p := s.pass.Fset.Position(pos)
	return fmt.Sprintf("%s:%d", filepath.Base(p.Filename), p.Line)
}

// findRoots marks functions that run concurrently: go statement bodies,
// HTTP handlers and time.AfterFunc callbacks.
func (s *state) findRoots(ins *inspector.Inspector) {
	info := s.pass.TypesInfo
	mark := func(e ast.Expr, why string) {
		switch x := ast.Unparen(e).(type) {
		case *ast.FuncLit:
			s.concurrent[x] = why
		default:
			if fn, ok := lintkit.ObjectOf(info, x).(*types.Func); ok {
				if d := s.decls[fn]; d != nil {
					s.concurrent[d] = why
				}
			}
		}
	}
	for cur := range ins.Root().Preorder((*ast.GoStmt)(nil), (*ast.FuncDecl)(nil), (*ast.FuncLit)(nil), (*ast.CallExpr)(nil)) {
		switch n := cur.Node().(type) {
		case *ast.GoStmt:
			mark(n.Call.Fun, "a goroutine")
		case *ast.FuncDecl:
			if n.Body != nil && (isHandler(info, n.Type) || (n.Recv != nil && n.Name.Name == "ServeHTTP")) {
				s.concurrent[n] = "an HTTP handler"
			}
		case *ast.FuncLit:
			if isHandler(info, n.Type) {
				s.concurrent[n] = "an HTTP handler"
			}
		case *ast.CallExpr:
			if lintkit.IsFunc(lintkit.Callee(info, n), "time", "AfterFunc") && len(n.Args) == 2 {
				mark(n.Args[1], "a time.AfterFunc callback")
			}
		}
	}
}

func isHandler(info *types.Info, ft *ast.FuncType) bool {
	if ft.Params == nil || ft.Params.NumFields() != 2 {
		return false
	}
	var ts []types.Type
	for _, f := range ft.Params.List {
		t := info.TypeOf(f.Type)
		for range max(1, len(f.Names)) {
			ts = append(ts, t)
		}
	}
	return len(ts) == 2 && lintkit.IsNamed(ts[0], "net/http", "ResponseWriter") && lintkit.IsNamed(ts[1], "net/http", "Request")
}

// propagate marks functions of the package called from concurrent ones.
func (s *state) propagate() {
	info := s.pass.TypesInfo
	work := make([]ast.Node, 0, len(s.concurrent))
	for n := range s.concurrent {
		work = append(work, n)
	}
	for len(work) > 0 {
		n := work[len(work)-1]
		work = work[:len(work)-1]
		why := s.concurrent[n]
		ast.Inspect(n, func(m ast.Node) bool {
			call, ok := m.(*ast.CallExpr)
			if !ok {
				return true
			}
			if fn := lintkit.Callee(info, call); fn != nil {
				if d := s.decls[fn]; d != nil {
					if _, seen := s.concurrent[d]; !seen {
						s.concurrent[d] = why
						work = append(work, d)
					}
				}
			}
			return true
		})
	}
}

func (s *state) classify(cur inspector.Cursor) access {
	info := s.pass.TypesInfo
	a := access{pos: cur.Node().Pos()}
	switch cur.ParentEdgeKind() {
	case edge.AssignStmt_Lhs, edge.IncDecStmt_X:
		a.write = true
	}
	var outer *ast.FuncDecl
	for f := range cur.Enclosing((*ast.FuncDecl)(nil), (*ast.FuncLit)(nil)) {
		n := f.Node()
		if why, ok := s.concurrent[n]; ok && a.concurrent == "" {
			a.concurrent = why
		}
		if d, ok := n.(*ast.FuncDecl); ok {
			outer = d
		}
		if _, ok := n.(*ast.FuncLit); ok && f.ParentEdgeKind() == edge.CallExpr_Args {
			if lintkit.IsMethod(lintkit.Callee(info, f.Parent().Node().(*ast.CallExpr)), "sync", "Once", "Do") {
				a.protected = true
			}
		}
	}
	if outer != nil && outer.Recv == nil && a.concurrent == "" &&
		(outer.Name.Name == "init" || (outer.Name.Name == "main" && s.pass.Pkg.Name() == "main")) {
		a.setup = true
	}
	if inner, ok := lintkit.EnclosingFunc(cur); ok && lockedBefore(info, inner.Node(), a.pos) {
		a.protected = true
	}
	// By convention a fooLocked function is called with the lock held.
	if outer != nil && strings.HasSuffix(outer.Name.Name, "Locked") {
		a.protected = true
	}
	return a
}

// lockedBefore reports whether fn's own body (not nested closures) calls
// Lock or RLock on a sync.Mutex/RWMutex before pos.
func lockedBefore(info *types.Info, fn ast.Node, pos token.Pos) bool {
	var body *ast.BlockStmt
	switch f := fn.(type) {
	case *ast.FuncDecl:
		body = f.Body
	case *ast.FuncLit:
		body = f.Body
	}
	found := false
	ast.Inspect(body, func(n ast.Node) bool {
		if found {
			return false
		}
		switch n := n.(type) {
		case *ast.FuncLit:
			return false
		case *ast.CallExpr:
			if n.Pos() >= pos {
				return false
			}
			fn := lintkit.Callee(info, n)
			if lintkit.IsMethod(fn, "sync", "Mutex", "Lock") || lintkit.IsMethod(fn, "sync", "RWMutex", "Lock", "RLock") {
				found = true
			}
		}
		return true
	})
	return found
}
