package lintkit

import (
	"go/ast"
	"go/token"
	"strconv"
	"strings"

	"golang.org/x/tools/go/analysis"
)

// Indent returns the leading white space of the line holding pos, read
// from the file, so an inserted statement lines up with its neighbours.
func Indent(pass *analysis.Pass, pos token.Pos) string {
	tf := pass.Fset.File(pos)
	if tf == nil || pass.ReadFile == nil {
		return "\t"
	}
	src, err := pass.ReadFile(tf.Name())
	if err != nil {
		return "\t"
	}
	start := tf.Offset(tf.LineStart(tf.Line(pos)))
	end := start
	for end < len(src) && (src[end] == ' ' || src[end] == '\t') {
		end++
	}
	return string(src[start:end])
}

// FileOf returns the syntax tree of the pass's file containing pos.
func FileOf(pass *analysis.Pass, pos token.Pos) *ast.File {
	for _, f := range pass.Files {
		if f.FileStart <= pos && pos <= f.FileEnd {
			return f
		}
	}
	return nil
}

// Imports returns the names under which file f refers to the given
// standard-library packages (named by their last path element) and the
// edits that add those it does not import yet. ok is false when a name is
// taken by another import or the package is imported as _ or ., which makes
// a fix unsafe.
func Imports(f *ast.File, paths ...string) (names []string, edits []analysis.TextEdit, ok bool) {
	var missing []string
	for _, path := range paths {
		name := path[strings.LastIndex(path, "/")+1:]
		found := false
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				continue
			}
			switch {
			case p == path && imp.Name == nil:
				found = true
			case p == path && (imp.Name.Name == "_" || imp.Name.Name == "."):
				return nil, nil, false
			case p == path:
				found, name = true, imp.Name.Name
			case imp.Name != nil && imp.Name.Name == name:
				return nil, nil, false
			}
		}
		names = append(names, name)
		if !found {
			missing = append(missing, strconv.Quote(path))
		}
	}
	if len(missing) == 0 {
		return names, nil, true
	}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.IMPORT {
			continue
		}
		if gd.Lparen.IsValid() {
			text := "\n\t" + strings.Join(missing, "\n\t")
			return names, []analysis.TextEdit{{Pos: gd.Lparen + 1, End: gd.Lparen + 1, NewText: []byte(text)}}, true
		}
		// `import "x"` becomes a parenthesised block holding both.
		spec := gd.Specs[0].(*ast.ImportSpec)
		old := spec.Path.Value
		if spec.Name != nil {
			old = spec.Name.Name + " " + old
		}
		text := "import (\n\t" + old + "\n\t" + strings.Join(missing, "\n\t") + "\n)"
		return names, []analysis.TextEdit{{Pos: gd.Pos(), End: gd.End(), NewText: []byte(text)}}, true
	}
	end := f.Name.End()
	text := "\n\nimport (\n\t" + strings.Join(missing, "\n\t") + "\n)"
	return names, []analysis.TextEdit{{Pos: end, End: end, NewText: []byte(text)}}, true
}
