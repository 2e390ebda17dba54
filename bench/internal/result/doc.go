// Package result is what each comparison hands the report: a Markdown
// section, the goals it checked (met or not, and by how much), and the
// files (SVG plots) it drew.
package result
