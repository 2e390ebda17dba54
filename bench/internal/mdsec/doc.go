// Package mdsec replaces one marked section of a Markdown file and leaves
// the rest as it was, so generated figures can share a page with text that
// people (and other generators) maintain.
package mdsec
