package lintkit

import (
	"go/ast"
	"go/token"
	"strings"

	"golang.org/x/tools/go/analysis"
)

// DirectivePrefix starts a suppression comment:
//
//	//pulselint:ignore <analyzer>[,<analyzer>...] <reason>
//
// It silences findings of the named analyzers on its own line and on the
// line below it. The reason is mandatory: an ignore without one is itself a
// finding and silences nothing.
const DirectivePrefix = "//pulselint:ignore"

type directive struct {
	pos    token.Pos
	file   string
	line   int
	reason string
	used   bool
}

// Reporter reports an analyzer's diagnostics through its pass, dropping
// those silenced by a //pulselint:ignore directive for that analyzer.
// Call Flush once at the end of the run to report malformed and unused
// directives.
type Reporter struct {
	pass  *analysis.Pass
	name  string
	valid []*directive // directives with a reason, for this analyzer
	bad   []*directive // directives without a reason, for this analyzer
}

// NewReporter scans the pass's files for directives naming this analyzer.
func NewReporter(pass *analysis.Pass) *Reporter {
	r := &Reporter{pass: pass, name: pass.Analyzer.Name}
	for _, f := range pass.Files {
		for _, cg := range f.Comments {
			for _, c := range cg.List {
				r.parse(c)
			}
		}
	}
	return r
}

func (r *Reporter) parse(c *ast.Comment) {
	rest, ok := strings.CutPrefix(c.Text, DirectivePrefix)
	if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '\t') {
		return
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return // names no analyzer: nobody owns it, so nobody reports it
	}
	named := false
	for _, n := range strings.Split(fields[0], ",") {
		if n == r.name {
			named = true
		}
	}
	if !named {
		return
	}
	p := r.pass.Fset.Position(c.Slash)
	d := &directive{pos: c.Slash, file: p.Filename, line: p.Line, reason: strings.Join(fields[1:], " ")}
	if d.reason == "" {
		r.bad = append(r.bad, d)
		return
	}
	r.valid = append(r.valid, d)
}

// Reportf reports a finding at pos unless a directive silences it.
func (r *Reporter) Reportf(pos token.Pos, format string, args ...any) {
	r.Report(analysis.Diagnostic{Pos: pos, Message: sprintf(format, args...)})
}

// Report reports d unless a directive silences it.
func (r *Reporter) Report(d analysis.Diagnostic) {
	p := r.pass.Fset.Position(d.Pos)
	for _, dir := range r.valid {
		if dir.file == p.Filename && (dir.line == p.Line || dir.line+1 == p.Line) {
			dir.used = true
			return
		}
	}
	r.pass.Report(d)
}

// Flush reports directives for this analyzer that have no reason or that
// silenced nothing, so stale ignores do not pile up.
func (r *Reporter) Flush() {
	for _, d := range r.bad {
		r.pass.Reportf(d.pos, "pulselint:ignore %s needs a reason (//pulselint:ignore %s <why this is safe>); the finding it covers is not silenced", r.name, r.name)
	}
	for _, d := range r.valid {
		if !d.used {
			r.pass.Reportf(d.pos, "unused pulselint:ignore for %s: no %s finding on this or the next line; remove it", r.name, r.name)
		}
	}
}
