package svg

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCDF(t *testing.T) {
	x, y := CDF([]float64{3, 1, 2, 2})
	wantX := []float64{1, 2, 2, 3}
	wantY := []float64{0.25, 0.5, 0.75, 1}
	for i := range wantX {
		if x[i] != wantX[i] || y[i] != wantY[i] {
			t.Fatalf("CDF = %v %v, want %v %v", x, y, wantX, wantY)
		}
	}
}

func TestChartIsWellFormedSVG(t *testing.T) {
	c := &Chart{Title: "a <b> & c", XLabel: "N", YLabel: "per second", XLog: true, YLog: true, Series: []Series{
		{Name: "etcd", X: []float64{1e4, 5e4, 1e5}, Y: []float64{7e3, 3e4, 5e4}, Marker: true},
		{Name: "pulse", X: []float64{1e4, 1e6}, Y: []float64{1e4, 0}, Dashed: true}, // 0 cannot be drawn on a log axis
		{Name: "cdf", X: []float64{1, 2}, Y: []float64{0.5, 1}, Step: true},
	}}
	var b bytes.Buffer
	if err := c.Write(&b); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	polylines, texts := 0, []string{}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, b.String())
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
		if cd, ok := tok.(xml.CharData); ok {
			texts = append(texts, string(cd))
		}
	}
	// The second series keeps one drawable point only: no line for it.
	if polylines != 2 {
		t.Errorf("%d polylines, want 2", polylines)
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"a <b> & c", "etcd", "pulse", "10k", "1M"} {
		if !strings.Contains(all, want) {
			t.Errorf("text %q missing from the chart (texts: %s)", want, all)
		}
	}
}

// TestEmptyChartsTerminate: a chart with nothing drawable (a run that
// failed) must still render, on log axes too.
func TestEmptyChartsTerminate(t *testing.T) {
	for _, log := range []bool{false, true} {
		c := &Chart{Title: "empty", XLog: log, YLog: log, Series: []Series{{Name: "none"}, {Name: "zeros", X: []float64{0}, Y: []float64{0}}}}
		var b bytes.Buffer
		if err := c.Write(&b); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), "</svg>") {
			t.Fatalf("log=%v: incomplete SVG", log)
		}
	}
}
