package archtest

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const module = "github.com/fb4b1dcc/pulse"

// allowed maps a package (relative to the module; a trailing "/..." covers
// its subpackages) to the pulse packages it may import, mirroring the table
// in ARCHITECTURE.md. "*" allows anything. A package may always import its
// own subpackages.
var allowed = map[string][]string{
	"status":                {},
	"clock":                 {},
	"clock/clocktest":       {"clock"},
	"internal/backoff":      {"clock"},
	"lazy":                  {"internal/backoff", "clock"},
	"health":                {"status", "clock"},
	"health/healthgrpc":     {"health", "status"},
	"detector/...":          {"detector", "status"},
	"wire":                  {"status"},
	"heartbeat":             {"wire", "clock", "internal/backoff", "telemetry", "status", "health", "proto/..."},
	"probe":                 {"status", "clock", "telemetry", "condition"},
	"condition":             {"status"},
	"ingest":                {"wire", "status", "clock", "telemetry", "proto/..."},
	"monitor/...":           {"monitor", "detector", "probe", "ingest", "condition", "status", "clock", "store", "telemetry", "internal/backoff", "wire"},
	"store":                 {"status"},
	"store/...":             {"store", "status"},
	"telemetry":             {"status"},
	"telemetry/metrics":     {"telemetry", "monitor", "ingest", "probe", "wire", "status", "store", "config"},
	"health/healthmetrics":  {"health", "status"},
	"heartbeat/beatmetrics": {"heartbeat", "wire", "status"},
	"config":                {"monitor", "condition", "status", "probe", "detector", "ingest", "wire"},
	"api":                   {"monitor", "status", "proto/...", "store", "ingest", "health"},
	"cluster":               {"monitor", "store", "config", "probe", "ingest", "wire", "status", "clock", "proto/...", "internal/backoff"},
	"cluster/...":           {},
	"proto/...":             {},
	"web":                   {},
	"internal/daemon":       {"*"},
	"internal/dashtest":     {"*"},
	"internal/demo":         {"*"},
	"internal/faultnet":     {},
	"internal/faultnet/...": {},
	"internal/archtest":     {},
	"cmd/...":               {"*"},
	"analysis/...":          {"analysis/..."},
	"incidents":             {"*"},
	"examples/...":          {"*"},
}

// testOnly are packages any test may import besides its package's rules:
// test doubles and fault injectors, and the other end of a protocol (a
// sender's test needs a receiver and the reverse).
var testOnly = []string{"clock/clocktest", "internal/faultnet/...", "store/storetest", "store/memory",
	"ingest", "heartbeat", "wire", "health", "proto/..."}

func rule(pkg string) ([]string, bool) {
	if r, ok := allowed[pkg]; ok {
		return r, true
	}
	for p := pkg; p != "."; p = filepath.Dir(p) {
		if r, ok := allowed[p+"/..."]; ok {
			return r, true
		}
	}
	return nil, false
}

func permits(rules []string, from, to string) bool {
	if strings.HasPrefix(to, from+"/") {
		return true
	}
	for _, r := range rules {
		if r == "*" || r == to || (strings.HasSuffix(r, "/...") && (to == strings.TrimSuffix(r, "/...") || strings.HasPrefix(to, strings.TrimSuffix(r, "...")))) {
			return true
		}
	}
	return false
}

type pkgInfo struct {
	path        string // relative to the module
	dir         string
	imports     []string
	testImports []string
	files       []string
}

// listPackages runs go list over the module, test imports included.
func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{.Dir}}\t{{join .Imports \" \"}}\t{{join .TestImports \" \"}} {{join .XTestImports \" \"}}\t{{join .GoFiles \" \"}}", module+"/...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkgInfo
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), "\t")
		if len(parts) != 5 {
			t.Fatalf("unexpected go list line %q", sc.Text())
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(parts[0], module), "/")
		if rel == "" {
			rel = "."
		}
		p := pkgInfo{path: rel, dir: parts[1], files: strings.Fields(parts[4]),
			imports: internal(parts[2]), testImports: internal(parts[3])}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// internal returns the pulse packages in a space-separated import list,
// relative to the module.
func internal(list string) []string {
	var out []string
	for _, imp := range strings.Fields(list) {
		if imp == module || strings.HasPrefix(imp, module+"/") {
			out = append(out, strings.TrimPrefix(strings.TrimPrefix(imp, module), "/"))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestImportsFollowTheLayout(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages; is the test running in the module?", len(pkgs))
	}
	for _, p := range pkgs {
		rules, ok := rule(p.path)
		if !ok {
			t.Errorf("package %s is not in the layout table; add it to ARCHITECTURE.md and to this test", p.path)
			continue
		}
		for _, imp := range p.imports {
			if !permits(rules, p.path, imp) {
				t.Errorf("%s imports %s, which the layout does not allow (allowed: %v)", p.path, imp, rules)
			}
		}
		testRules := append(slices.Clone(rules), testOnly...)
		for _, imp := range p.testImports {
			if imp != p.path && !permits(testRules, p.path, imp) {
				t.Errorf("tests of %s import %s, which the layout does not allow (allowed: %v)", p.path, imp, testRules)
			}
		}
	}
}

// TestDetectorIsPure: detectors are pure functions of history and time: no
// net import, no goroutines.
func TestDetectorIsPure(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.path != "detector" && !strings.HasPrefix(p.path, "detector/") {
			continue
		}
		if p.path != "detector" {
			continue // the simulator drives detectors; only the detectors must be pure
		}
		for _, v := range impurities(p) {
			t.Error(v)
		}
	}
}

// impurities lists the ways the package's files break detector purity.
func impurities(p pkgInfo) []string {
	var out []string
	fset := token.NewFileSet()
	for _, f := range p.files {
		file, err := parser.ParseFile(fset, filepath.Join(p.dir, f), nil, 0)
		if err != nil {
			return append(out, err.Error())
		}
		for _, imp := range file.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			if path == "net" || strings.HasPrefix(path, "net/") || path == "os" || path == "syscall" {
				out = append(out, fmt.Sprintf("%s: %s imports %s; detectors do no I/O", p.path, fset.Position(imp.Pos()), path))
			}
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				out = append(out, fmt.Sprintf("%s: go statement at %s; detectors start no goroutines", p.path, fset.Position(n.Pos())))
			case *ast.SelectorExpr:
				if id, ok := n.X.(*ast.Ident); ok && id.Name == "time" && (n.Sel.Name == "Now" || n.Sel.Name == "Sleep" || n.Sel.Name == "Since") {
					out = append(out, fmt.Sprintf("%s: time.%s at %s; detectors take time as an argument", p.path, n.Sel.Name, fset.Position(n.Pos())))
				}
			}
			return true
		})
	}
	return out
}

// The purity check must catch what it claims to.
func TestAssertPureCatchesViolations(t *testing.T) {
	dir := t.TempDir()
	src := "package detector\nimport (\"net\"; \"time\")\nvar _ = net.IPv4len\nfunc f() { go func(){}(); _ = time.Now() }\n"
	if err := writeFile(filepath.Join(dir, "bad.go"), src); err != nil {
		t.Fatal(err)
	}
	got := impurities(pkgInfo{path: "detector", dir: dir, files: []string{"bad.go"}})
	if len(got) != 3 {
		t.Fatalf("want 3 impurities (net import, go statement, time.Now), got %q", got)
	}
}

func TestPermits(t *testing.T) {
	cases := []struct {
		rules    []string
		from, to string
		want     bool
	}{
		{[]string{"status"}, "health", "status", true},
		{[]string{"status"}, "health", "clock", false},
		{[]string{"proto/..."}, "ingest", "proto/pulse/v1", true},
		{[]string{"proto/..."}, "ingest", "protobuf", false},
		{nil, "health", "health/healthgrpc", true},
		{[]string{"*"}, "cmd/pulse", "monitor", true},
	}
	for _, c := range cases {
		if got := permits(c.rules, c.from, c.to); got != c.want {
			t.Errorf("permits(%v, %s → %s) = %v", c.rules, c.from, c.to, got)
		}
	}
}
