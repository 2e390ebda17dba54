package condition

import (
	"errors"
	"fmt"
	"strings"

	"cel.dev/cel-go/cel"
)

// Error is a compile error in one expression, pointing at the column where
// CEL found the problem. Line and Column are 1-based.
type Error struct {
	Field  string // which expression: "healthy[0]", "degraded[1].when", "expect"
	Expr   string
	Line   int
	Column int
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: line %d, column %d: %s\n", e.Field, e.Line, e.Column, e.Msg)
	lines := strings.Split(e.Expr, "\n")
	if e.Line >= 1 && e.Line <= len(lines) {
		src := lines[e.Line-1]
		fmt.Fprintf(&b, "  | %s\n  | %s^", src, caretPad(src, e.Column))
	}
	return b.String()
}

// caretPad indents the caret under column col, keeping tabs so it lines up.
func caretPad(src string, col int) string {
	var b strings.Builder
	i := 0
	for _, r := range src {
		if i >= col-1 {
			break
		}
		if r == '\t' {
			b.WriteByte('\t')
		} else {
			b.WriteByte(' ')
		}
		i++
	}
	return b.String()
}

// issueError converts CEL issues into *Error values (joined).
func issueError(field, src string, iss *cel.Issues) error {
	var errs []error
	for _, ce := range iss.Errors() {
		line, col := ce.Location.Line(), ce.Location.Column()+1
		if line < 1 {
			line = 1
		}
		if col < 1 {
			col = 1
		}
		errs = append(errs, &Error{Field: field, Expr: src, Line: line, Column: col, Msg: ce.Message})
	}
	if len(errs) == 0 {
		errs = append(errs, &Error{Field: field, Expr: src, Line: 1, Column: 1, Msg: iss.String()})
	}
	return errors.Join(errs...)
}
