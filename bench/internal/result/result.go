package result

import (
	"fmt"
	"strings"
)

// Goal is one of the goals, checked against this run's figures.
type Goal struct {
	Comparison string
	Goal       string
	Met        bool
	// Measured says what was measured and, when missed, by how much.
	Measured string
}

// Section is one comparison's part of the report.
type Section struct {
	Title   string
	Command string // how to run this comparison alone, if it can be
	Body    strings.Builder
	Goals   []Goal
	Files   map[string][]byte // name (under docs/benchmarks/) → content
	// Err is set when the comparison failed to run; Body then says so.
	Err error
}

// New returns an empty section.
func New(title string) *Section { return &Section{Title: title, Files: map[string][]byte{}} }

// P appends a paragraph.
func (s *Section) P(format string, args ...any) {
	fmt.Fprintf(&s.Body, format, args...)
	s.Body.WriteString("\n\n")
}

// Table appends a Markdown table.
func (s *Section) Table(header []string, rows [][]string) {
	s.Body.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for range header {
		s.Body.WriteString("---|")
	}
	s.Body.WriteString("\n")
	for _, r := range rows {
		s.Body.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	s.Body.WriteString("\n")
}

// Goal records a goal check.
func (s *Section) Goal(goal string, met bool, format string, args ...any) {
	s.Goals = append(s.Goals, Goal{Comparison: s.Title, Goal: goal, Met: met, Measured: fmt.Sprintf(format, args...)})
}
