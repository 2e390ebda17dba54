// Package svg draws the report's line charts as plain SVG: axes with
// ticks (linear or logarithmic), one polyline (optionally with markers)
// per series and a legend. No plotting library: the figures are simple and
// the files must diff well.
package svg
