package grpconly

import (
	"go/ast"
	"go/constant"
	"go/token"
	"strconv"
	"strings"

	"golang.org/x/tools/go/analysis"

	"github.com/fb4b1dcc/pulse/analysis/internal/lintkit"
)

// Analyzer reports main packages with gRPC health only.
var Analyzer = &analysis.Analyzer{
	Name: "grpconly",
	Doc:  "report main packages that register grpc.health.v1 but serve no HTTP health endpoint (AP-12: HTTP probes get 404 and kill healthy pods); serve the same state on HTTP /livez, /readyz, /healthz",
	URL:  "https://github.com/fb4b1dcc/pulse/blob/main/docs/pulselint.md#grpconly",
	Run:  run,
}

const healthV1 = "google.golang.org/grpc/health/grpc_health_v1"

func run(pass *analysis.Pass) (any, error) {
	if pass.Pkg.Name() != "main" {
		return nil, nil
	}
	rep := lintkit.NewReporter(pass)
	info := pass.TypesInfo
	var regs []*ast.CallExpr
	httpHealth := false
	for _, f := range pass.Files {
		if strings.HasSuffix(pass.Fset.Position(f.Pos()).Filename, "_test.go") {
			continue
		}
		for _, imp := range f.Imports {
			if p, err := strconv.Unquote(imp.Path.Value); err == nil && healthLibrary(p) {
				httpHealth = true
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ImportSpec:
				return false
			case *ast.BasicLit:
				if n.Kind == token.STRING {
					if s, err := strconv.Unquote(n.Value); err == nil && lintkit.HealthPath(s) {
						httpHealth = true
					}
				}
			case *ast.CallExpr:
				if lintkit.IsFunc(lintkit.Callee(info, n), healthV1, "RegisterHealthServer") {
					regs = append(regs, n)
				}
			case ast.Expr:
				// Paths built from constants ("GET " + healthPath).
				if tv, ok := info.Types[n]; ok && tv.Value != nil && tv.Value.Kind() == constant.String {
					if lintkit.HealthPath(constant.StringVal(tv.Value)) {
						httpHealth = true
					}
				}
			}
			return true
		})
	}
	if !httpHealth {
		for _, call := range regs {
			rep.Reportf(call.Pos(), "this program serves health only over gRPC (grpc.health.v1): a Kubernetes httpGet probe or an HTTP load-balancer check gets 404 and restarts or drains healthy instances, as mid-rollout in INC-2023-004 (AP-12); serve the same state on HTTP /livez, /readyz and /healthz as well")
		}
	}
	rep.Flush()
	return nil, nil
}

// healthLibrary reports whether an import path names a health library other
// than gRPC's own: such libraries usually serve HTTP endpoints for the
// program.
func healthLibrary(path string) bool {
	if path == "google.golang.org/grpc/health" || strings.HasPrefix(path, "google.golang.org/grpc/health/") {
		return false
	}
	for _, seg := range strings.Split(path, "/") {
		if lintkit.HealthLike(seg) {
			return true
		}
	}
	return false
}
