package lintkit

import (
	"go/ast"
	"strings"
	"unicode"
)

// Words splits an identifier into lower-case words at camel-case humps,
// digits and underscores: "sendHTTPHeartbeat2" → [send http heartbeat 2].
func Words(ident string) []string {
	var words []string
	rs := []rune(ident)
	start := 0
	flush := func(end int) {
		if end > start {
			words = append(words, strings.ToLower(string(rs[start:end])))
		}
		start = end
	}
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		if r == '_' || r == '-' || r == '.' || r == '/' {
			flush(i)
			start = i + 1
			continue
		}
		if i == start {
			continue
		}
		prev := rs[i-1]
		switch {
		case unicode.IsUpper(r) && unicode.IsLower(prev):
			flush(i)
		case unicode.IsUpper(r) && unicode.IsUpper(prev) && i+1 < len(rs) && unicode.IsLower(rs[i+1]):
			flush(i) // "HTTPServer": split before "Server"
		case unicode.IsDigit(r) != unicode.IsDigit(prev):
			flush(i)
		}
	}
	flush(len(rs))
	return words
}

// healthWords name the liveness side of a service: things that must answer
// fast and must not be fooled.
var healthWords = map[string]bool{
	"health": true, "healthy": true, "healthz": true, "healthcheck": true,
	"heartbeat": true, "heartbeats": true, "beat": true, "beats": true,
	"probe": true, "probes": true, "prober": true, "probing": true, "liveness": true, "livez": true,
	"readiness": true, "readyz": true, "alive": true, "keepalive": true,
	"ping": true, "pinger": true,
}

// HealthLike reports whether any of the identifiers contains a word that
// names a heartbeat, probe or health check (whole words only, so
// "mapping" or "shipping" do not count).
func HealthLike(idents ...string) bool {
	for _, id := range idents {
		for _, w := range Words(id) {
			if healthWords[w] {
				return true
			}
		}
	}
	return false
}

// healthSegments are the final path segments that probes and load
// balancers poll.
var healthSegments = map[string]bool{
	"health": true, "healthz": true, "healthcheck": true, "health-check": true,
	"livez": true, "readyz": true, "ping": true, "status": true,
	"heartbeat": true, "liveness": true, "readiness": true, "ready": true,
	"live": true, "alive": true,
}

// HealthPath reports whether an HTTP route pattern (optionally prefixed by
// a method, as in "GET /healthz", or by a host) names a health endpoint.
func HealthPath(pattern string) bool {
	if _, after, ok := strings.Cut(pattern, " "); ok {
		pattern = strings.TrimSpace(after)
	}
	i := strings.Index(pattern, "/")
	if i < 0 {
		return false
	}
	p := strings.TrimRight(pattern[i:], "/{}$.")
	seg := p[strings.LastIndex(p, "/")+1:]
	return healthSegments[strings.ToLower(seg)]
}

// HealthFunc reports whether a function declaration belongs to heartbeat
// or health-check code: its name, its receiver's type name or its package's
// import path has a health-like word (so every function of a package such
// as github.com/x/healthcheck/checks/http counts).
func HealthFunc(pkgPath string, fd *ast.FuncDecl) bool {
	return HealthLike(fd.Name.Name, RecvTypeName(fd)) || HealthLike(strings.Split(pkgPath, "/")...)
}

// RecvTypeName returns the name of a method's receiver type, or "".
func RecvTypeName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return ""
	}
	t := fd.Recv.List[0].Type
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
		case *ast.IndexExpr:
			t = x.X
		case *ast.IndexListExpr:
			t = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}
