package lintkit

import (
	"go/version"

	"golang.org/x/tools/go/analysis"
)

// GoVersion returns the Go version that governs the package's runtime
// defaults. The module's go line comes first: since Go 1.21 a main module's
// go line is at least that of every module it requires, so a library whose
// go line is ≥ 1.23 only ever runs with the Go 1.23 timer semantics. It
// falls back to the package's language version; "" means unknown.
func GoVersion(pass *analysis.Pass) string {
	if pass.Module != nil && pass.Module.GoVersion != "" {
		return normalize(pass.Module.GoVersion)
	}
	if pass.Pkg != nil && pass.Pkg.GoVersion() != "" {
		return normalize(pass.Pkg.GoVersion())
	}
	return ""
}

func normalize(v string) string {
	if version.IsValid(v) {
		return v
	}
	if version.IsValid("go" + v) {
		return "go" + v
	}
	return ""
}

// AtLeast reports whether v (as returned by GoVersion) is known and at
// least min (e.g. "go1.23").
func AtLeast(v, min string) bool {
	return v != "" && version.Compare(v, min) >= 0
}
