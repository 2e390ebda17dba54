package healthio

import (
	"fmt"
	"go/ast"
	"go/constant"
	"go/token"
	"go/types"
	"strings"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/passes/inspect"
	"golang.org/x/tools/go/ast/inspector"

	"github.com/fb4b1dcc/pulse/analysis/internal/lintkit"
)

// Analyzer reports health handlers that reach blocking I/O.
var Analyzer = &analysis.Analyzer{
	Name:     "healthio",
	Doc:      "report HTTP handlers on health-like paths whose body reaches blocking I/O (database/sql, network, os/exec) in the same package (AP-02: a slow dependency fails every probe); check dependencies in the background and serve the cached result",
	URL:      "https://github.com/fb4b1dcc/pulse/blob/main/docs/pulselint.md#healthio",
	Requires: []*analysis.Analyzer{inspect.Analyzer},
	Run:      run,
}

var registerNames = map[string]bool{
	"Handle": true, "HandleFunc": true, "Handler": true, "HandlerFunc": true,
	"Get": true, "GET": true, "Head": true, "HEAD": true, "Any": true,
}

// maxDepth bounds how far calls are followed inside the package.
const maxDepth = 8

type hit struct {
	what  string    // e.g. "(*database/sql.DB).QueryRow"
	pos   token.Pos // the I/O call
	chain []string  // functions between the handler and the call
}

type finder struct {
	pass  *analysis.Pass
	decls map[*types.Func]*ast.FuncDecl
	memo  map[*ast.FuncDecl]*hit
	busy  map[*ast.FuncDecl]bool
}

func run(pass *analysis.Pass) (any, error) {
	ins := pass.ResultOf[inspect.Analyzer].(*inspector.Inspector)
	rep := lintkit.NewReporter(pass)
	f := &finder{
		pass:  pass,
		decls: lintkit.FuncDecls(pass.TypesInfo, pass.Files),
		memo:  make(map[*ast.FuncDecl]*hit),
		busy:  make(map[*ast.FuncDecl]bool),
	}
	for cur := range ins.Root().Preorder((*ast.CallExpr)(nil)) {
		call := cur.Node().(*ast.CallExpr)
		path, handler, ok := f.registration(call)
		if !ok {
			continue
		}
		h := f.handlerIO(handler)
		if h == nil {
			continue
		}
		via := ""
		if len(h.chain) > 0 {
			via = " via " + strings.Join(h.chain, " → ")
		}
		rep.Report(analysis.Diagnostic{
			Pos: handler.Pos(), End: handler.End(),
			Message: fmt.Sprintf("health handler for %q calls blocking I/O %s%s: a slow dependency makes every probe slow or failing at once, the orchestrator restarts healthy instances and the probes add load to the struggling dependency (AP-02, INC-2024-0117); check dependencies in the background and serve the cached result", path, h.what, via),
			Related: []analysis.RelatedInformation{{Pos: h.pos, Message: "blocking call"}},
		})
	}
	rep.Flush()
	return nil, nil
}

// registration recognises `x.HandleFunc("/healthz", h)` and its framework
// cousins; it returns the path and the handler expression.
func (f *finder) registration(call *ast.CallExpr) (string, ast.Expr, bool) {
	if len(call.Args) < 2 {
		return "", nil, false
	}
	var name string
	switch fun := ast.Unparen(call.Fun).(type) {
	case *ast.SelectorExpr:
		name = fun.Sel.Name
	case *ast.Ident:
		name = fun.Name
	}
	if !registerNames[name] {
		return "", nil, false
	}
	for _, a := range call.Args[:len(call.Args)-1] {
		tv, ok := f.pass.TypesInfo.Types[a]
		if !ok || tv.Value == nil || tv.Value.Kind() != constant.String {
			continue
		}
		if p := constant.StringVal(tv.Value); lintkit.HealthPath(p) {
			return p, call.Args[len(call.Args)-1], true
		}
	}
	return "", nil, false
}

// handlerIO resolves a handler expression to function bodies of this
// package and searches them.
func (f *finder) handlerIO(e ast.Expr) *hit {
	info := f.pass.TypesInfo
	e = ast.Unparen(e)
	switch x := e.(type) {
	case *ast.FuncLit:
		return f.search(x.Body, 0)
	case *ast.CallExpr:
		if tv, ok := info.Types[x.Fun]; ok && tv.IsType() && len(x.Args) == 1 {
			return f.handlerIO(x.Args[0]) // http.HandlerFunc(fn)
		}
		if fn := lintkit.Callee(info, x); fn != nil {
			if d := f.decls[fn]; d != nil {
				return f.searchDecl(d, 0) // a factory: its body holds the handler
			}
		}
		// A factory from another package (health.NewHandler(check)): the
		// functions handed to it are what the handler runs.
		for _, a := range x.Args {
			switch a := ast.Unparen(a).(type) {
			case *ast.FuncLit:
				if h := f.search(a.Body, 0); h != nil {
					return h
				}
			case *ast.Ident, *ast.SelectorExpr:
				if fn, ok := lintkit.ObjectOf(info, a).(*types.Func); ok && f.decls[fn] != nil {
					if h := f.searchDecl(f.decls[fn], 0); h != nil {
						return h
					}
				}
			}
		}
		return nil
	case *ast.Ident, *ast.SelectorExpr:
		if fn, ok := lintkit.ObjectOf(info, x).(*types.Func); ok {
			if d := f.decls[fn]; d != nil {
				return f.searchDecl(d, 0)
			}
			return nil
		}
	}
	// A value whose type has a ServeHTTP method declared in this package.
	if t := info.TypeOf(e); t != nil {
		obj, _, _ := types.LookupFieldOrMethod(t, true, f.pass.Pkg, "ServeHTTP")
		if fn, ok := obj.(*types.Func); ok {
			if d := f.decls[fn]; d != nil {
				return f.searchDecl(d, 0)
			}
		}
	}
	return nil
}

func (f *finder) searchDecl(d *ast.FuncDecl, depth int) *hit {
	if h, ok := f.memo[d]; ok {
		return h
	}
	if f.busy[d] {
		return nil
	}
	f.busy[d] = true
	h := f.search(d.Body, depth)
	delete(f.busy, d)
	f.memo[d] = h
	return h
}

// search walks a body for blocking calls, following static calls into the
// package and skipping work started in the background.
func (f *finder) search(body ast.Node, depth int) *hit {
	if depth > maxDepth || body == nil {
		return nil
	}
	info := f.pass.TypesInfo
	var found *hit
	ast.Inspect(body, func(n ast.Node) bool {
		if found != nil {
			return false
		}
		switch n := n.(type) {
		case *ast.GoStmt:
			return false
		case *ast.CallExpr:
			fn := lintkit.Callee(info, n)
			if fn == nil {
				return true
			}
			if lintkit.IsFunc(fn, "time", "AfterFunc") {
				return false
			}
			if what := blocking(fn); what != "" {
				found = &hit{what: what, pos: n.Pos()}
				return false
			}
			if d := f.decls[fn]; d != nil {
				if h := f.searchDecl(d, depth+1); h != nil {
					found = &hit{what: h.what, pos: h.pos, chain: append([]string{fn.Name()}, h.chain...)}
					return false
				}
			}
		}
		return true
	})
	return found
}

// blocking names fn if it is a call that waits on a database, the network
// or another process.
func blocking(fn *types.Func) string {
	sig, _ := fn.Type().(*types.Signature)
	if sig == nil {
		return ""
	}
	pkg := ""
	if fn.Pkg() != nil {
		pkg = fn.Pkg().Path()
	}
	if sig.Recv() == nil {
		switch {
		case pkg == "net" && (strings.HasPrefix(fn.Name(), "Dial") || strings.HasPrefix(fn.Name(), "Lookup")),
			pkg == "crypto/tls" && strings.HasPrefix(fn.Name(), "Dial"),
			pkg == "net/http" && (fn.Name() == "Get" || fn.Name() == "Head" || fn.Name() == "Post" || fn.Name() == "PostForm"):
			return pkg + "." + fn.Name()
		}
		return ""
	}
	recv := sig.Recv().Type()
	method := func(path, typ string, names ...string) bool { return lintkit.IsMethod(fn, path, typ, names...) }
	switch {
	case method("database/sql", "DB", sqlMethods...),
		method("database/sql", "Conn", sqlMethods...),
		method("database/sql", "Tx", sqlMethods...),
		method("database/sql", "Stmt", sqlMethods...),
		method("net", "Dialer", "Dial", "DialContext"),
		method("net", "Resolver", "LookupHost", "LookupIP", "LookupIPAddr", "LookupNetIP", "LookupAddr", "LookupCNAME", "LookupSRV", "LookupMX", "LookupNS", "LookupTXT", "LookupPort"),
		method("crypto/tls", "Dialer", "Dial", "DialContext"),
		method("crypto/tls", "Conn", "Handshake", "HandshakeContext"),
		method("net/http", "Client", "Do", "Get", "Head", "Post", "PostForm"),
		method("net/http", "Transport", "RoundTrip"),
		method("os/exec", "Cmd", "Run", "Output", "CombinedOutput", "Start"),
		method("net/rpc", "Client", "Call"),
		method("google.golang.org/grpc", "ClientConn", "Invoke", "NewStream"):
		return fmt.Sprintf("(%s).%s", types.TypeString(recv, nil), fn.Name())
	}
	if isGRPCClientMethod(sig) {
		return fmt.Sprintf("gRPC call %s", fn.Name())
	}
	if clientCall(pkg, sig) {
		return fmt.Sprintf("(%s).%s", types.TypeString(recv, func(p *types.Package) string { return p.Path() }), fn.Name())
	}
	return ""
}

// blockingClients are data-store clients whose context-taking methods do
// network round trips; calls through their interfaces cannot be followed,
// so they are named here.
var blockingClients = []string{
	"go.etcd.io/etcd/client/v3",
	"github.com/redis/go-redis/",
	"github.com/go-redis/redis",
	"go.mongodb.org/mongo-driver/",
	"github.com/jackc/pgx/",
	"github.com/jmoiron/sqlx",
}

func clientCall(pkg string, sig *types.Signature) bool {
	if sig.Params().Len() == 0 || !lintkit.IsNamed(sig.Params().At(0).Type(), "context", "Context") {
		return false
	}
	for _, p := range blockingClients {
		if pkg == strings.TrimSuffix(p, "/") || strings.HasPrefix(pkg, p) {
			return true
		}
	}
	return false
}

var sqlMethods = []string{
	"Query", "QueryContext", "QueryRow", "QueryRowContext", "Exec", "ExecContext",
	"Ping", "PingContext", "Begin", "BeginTx", "Prepare", "PrepareContext", "Conn",
}

// isGRPCClientMethod matches generated client methods: (ctx, ...,
// ...grpc.CallOption).
func isGRPCClientMethod(sig *types.Signature) bool {
	if !sig.Variadic() || sig.Params().Len() < 2 {
		return false
	}
	if !lintkit.IsNamed(sig.Params().At(0).Type(), "context", "Context") {
		return false
	}
	last, ok := sig.Params().At(sig.Params().Len() - 1).Type().(*types.Slice)
	return ok && lintkit.IsNamed(last.Elem(), "google.golang.org/grpc", "CallOption")
}
