package config

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// FieldError is one problem in a configuration file.
type FieldError struct {
	File  string
	Line  int    // 0 when the problem has no single line (a missing field)
	Field string // dotted path, e.g. services[0].passive.interval
	Msg   string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// FieldErrors returns every *FieldError joined in err.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		var fe *FieldError
		if errors.As(e, &fe) && fe == e {
			out = append(out, fe)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if errors.As(e, &fe) {
			out = append(out, fe)
		}
	}
	walk(err)
	return out
}

// problems collects errors while a file is checked.
type problems struct {
	file  string
	lines map[string]int // field path → line
	errs  []*FieldError
}

// add records a problem at field, whose line comes from the parsed file.
func (p *problems) add(field, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{File: p.file, Line: p.line(field), Field: field, Msg: fmt.Sprintf(format, args...)})
}

// line finds the line of field, or of its closest ancestor present in the
// file (a missing field is reported where its parent is).
func (p *problems) line(field string) int {
	for f := field; f != ""; f = parent(f) {
		if l, ok := p.lines[f]; ok {
			return l
		}
	}
	return 0
}

func parent(field string) string {
	i := strings.LastIndexAny(field, ".[")
	if i < 0 {
		return ""
	}
	return field[:i]
}

func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)
var durationRE = regexp.MustCompile("^cannot unmarshal !!(?:int|float) `([^`]*)` into time.Duration$")
var notFoundRE = regexp.MustCompile(`^field (\S+) not found in type \S+$`)

// fromYAML turns one message of yaml.v3's TypeError ("line 5: field x not
// found in type config.Service") into a FieldError with the field path.
func (p *problems) fromYAML(msg string, byLine map[int]string) {
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		p.errs = append(p.errs, &FieldError{File: p.file, Msg: msg})
		return
	}
	line, _ := strconv.Atoi(m[1])
	text := m[2]
	field := byLine[line]
	if nf := notFoundRE.FindStringSubmatch(text); nf != nil {
		text = fmt.Sprintf("unknown field %q (check the spelling; see docs/config.md)", nf[1])
	} else if dur := durationRE.FindStringSubmatch(text); dur != nil {
		text = fmt.Sprintf("duration %q needs a unit, e.g. %ss or %sms", dur[1], dur[1], dur[1])
	} else {
		text = strings.Replace(text, "cannot unmarshal !!", "cannot use a YAML ", 1)
	}
	p.errs = append(p.errs, &FieldError{File: p.file, Line: line, Field: field, Msg: text})
}
