package svg

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// Series is one line.
type Series struct {
	Name   string
	X, Y   []float64
	Dashed bool
	Step   bool // draw as a step function (a CDF)
	Marker bool
}

// Chart is a line chart.
type Chart struct {
	Title          string
	XLabel, YLabel string
	XLog, YLog     bool
	XMin, XMax     float64 // 0,0: from the data
	YMin, YMax     float64
	Series         []Series
	Width, Height  int
}

var colours = []string{"#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"}

// Write renders the chart.
func (c *Chart) Write(w io.Writer) error {
	if c.Width == 0 {
		c.Width = 760
	}
	if c.Height == 0 {
		c.Height = 440
	}
	const left, right, top, bottom = 80, 190, 40, 60
	pw, ph := float64(c.Width-left-right), float64(c.Height-top-bottom)
	xmin, xmax, ymin, ymax := c.XMin, c.XMax, c.YMin, c.YMax
	if xmin == 0 && xmax == 0 {
		xmin, xmax = bounds(c.Series, true, c.XLog)
	}
	if ymin == 0 && ymax == 0 {
		ymin, ymax = bounds(c.Series, false, c.YLog)
		if !c.YLog {
			ymin = math.Min(ymin, 0)
		}
	}
	if xmax <= xmin {
		xmax = xmin + 1
	}
	if ymax <= ymin {
		ymax = ymin + 1
	}
	tx := scale(xmin, xmax, c.XLog)
	ty := scale(ymin, ymax, c.YLog)
	px := func(x float64) float64 { return left + tx(x)*pw }
	py := func(y float64) float64 { return top + (1-ty(y))*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", c.Width, c.Height, c.Width, c.Height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, esc(c.Title))
	// Grid and ticks.
	for _, t := range ticks(xmin, xmax, c.XLog) {
		x := px(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x, top, x, top+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, top+ph+16, label(t))
	}
	for _, t := range ticks(ymin, ymax, c.YLog) {
		y := py(t)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", left, y, left+pw, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, label(t))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", left+pw/2, c.Height-18, esc(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(18,%.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+ph/2, esc(c.YLabel))
	// Series.
	for i, s := range c.Series {
		col := colours[i%len(colours)]
		var pts []string
		prevY := math.NaN()
		for j := range s.X {
			if j >= len(s.Y) || !finite(s.X[j], c.XLog) || !finite(s.Y[j], c.YLog) {
				continue
			}
			x, y := px(clamp(s.X[j], xmin, xmax)), py(clamp(s.Y[j], ymin, ymax))
			if s.Step && !math.IsNaN(prevY) {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, prevY))
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
			prevY = y
			if s.Marker {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", x, y, col)
			}
		}
		dash := ""
		if s.Dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		if len(pts) > 1 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", col, dash, strings.Join(pts, " "))
		}
		ly := top + 14 + i*20
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n", left+pw+12, ly, left+pw+36, ly, col, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", left+pw+42, ly+4, esc(s.Name))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func finite(v float64, log bool) bool {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return false
	}
	return !log || v > 0
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

func bounds(ss []Series, x, log bool) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		vs := s.Y
		if x {
			vs = s.X
		}
		for _, v := range vs {
			if !finite(v, log) {
				continue
			}
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if math.IsInf(lo, 1) {
		if log {
			return 1, 10
		}
		return 0, 1
	}
	if log {
		return math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	}
	step := niceStep((hi - lo) / 5)
	return math.Floor(lo/step) * step, math.Ceil(hi/step) * step
}

func scale(lo, hi float64, log bool) func(float64) float64 {
	if log {
		a, b := math.Log10(lo), math.Log10(hi)
		return func(v float64) float64 { return (math.Log10(v) - a) / (b - a) }
	}
	return func(v float64) float64 { return (v - lo) / (hi - lo) }
}

func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func ticks(lo, hi float64, log bool) []float64 {
	var out []float64
	if log {
		if lo <= 0 || hi <= 0 || math.IsInf(lo, 0) || math.IsInf(hi, 0) || math.IsNaN(lo) || math.IsNaN(hi) {
			return nil
		}
		for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
			v := math.Pow(10, e)
			if v >= lo*0.999 && v <= hi*1.001 {
				out = append(out, v)
			}
		}
		return out
	}
	if math.IsInf(lo, 0) || math.IsInf(hi, 0) || math.IsNaN(lo) || math.IsNaN(hi) {
		return nil
	}
	step := niceStep((hi - lo) / 6)
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		out = append(out, v)
	}
	return out
}

func label(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1e6:
		return trim(fmt.Sprintf("%.1fM", v/1e6))
	case a >= 1e3:
		return trim(fmt.Sprintf("%.1fk", v/1e3))
	case a >= 1:
		return trim(fmt.Sprintf("%.2f", v))
	default:
		return trim(fmt.Sprintf("%.3f", v))
	}
}

func trim(s string) string {
	unit := ""
	if n := len(s); n > 0 && (s[n-1] == 'k' || s[n-1] == 'M') {
		s, unit = s[:n-1], s[n-1:]
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s + unit
}

func esc(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	return r.Replace(s)
}

// CDF returns the empirical CDF of xs as step points (x sorted, y in
// (0,1]).
func CDF(xs []float64) (x, y []float64) {
	s := append([]float64(nil), xs...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	for i, v := range s {
		x = append(x, v)
		y = append(y, float64(i+1)/float64(len(s)))
	}
	return x, y
}
