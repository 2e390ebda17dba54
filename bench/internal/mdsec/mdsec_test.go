package mdsec

import (
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReplaceKeepsOtherSections(t *testing.T) {
	doc := "# Benchmarks\n\nintro\n\n<!-- BEGIN heartbeats (issue 5) -->\nHB\n<!-- END heartbeats -->\n\n<!-- BEGIN report (generated) -->\nold\nlines\n<!-- END report -->\n\ntail text\n"
	got, err := Replace(doc, "report", "new body\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# Benchmarks\n\nintro\n\n<!-- BEGIN heartbeats (issue 5) -->\nHB\n<!-- END heartbeats -->\n\n<!-- BEGIN report (generated) -->\nnew body\n<!-- END report -->\n\ntail text\n"
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	// Idempotent.
	again, err := Replace(got, "report", "new body")
	if err != nil || again != got {
		t.Fatalf("second replace changed the document: %v\n%s", err, again)
	}
}

func TestReplaceAppendsWhenAbsent(t *testing.T) {
	got, err := Replace("# B\n\ntext\n", "report", "body")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "# B\n\ntext\n\n<!-- BEGIN report") || !strings.HasSuffix(got, "-->\nbody\n<!-- END report -->\n") {
		t.Fatalf("unexpected document:\n%s", got)
	}
}

func TestReplaceRefusesUnbalancedMarkers(t *testing.T) {
	if _, err := Replace("<!-- BEGIN report -->\nx\n", "report", "b"); err == nil {
		t.Fatal("BEGIN without END accepted")
	}
	if _, err := Replace("x\n<!-- END report -->\n", "report", "b"); err == nil {
		t.Fatal("END without BEGIN accepted")
	}
}

func TestReplaceMatchesWholeMarkerAtLineStart(t *testing.T) {
	// A mention of the marker inside a line is not a marker, and a longer
	// name ("reporter") is another section.
	doc := "see `<!-- BEGIN report -->` here\n<!-- BEGIN reporter -->\nR\n<!-- END reporter -->\n"
	got, err := Replace(doc, "report", "b")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, doc) {
		t.Fatalf("existing text changed:\n%s", got)
	}
}
