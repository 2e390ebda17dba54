// Package lintkit holds what the pulselint analyzers share: the
// //pulselint:ignore directive (a Reporter that honours it and reports
// directives that lack a reason or silence nothing), callee matching,
// identifier-word heuristics for health-like names, terminating-statement
// checks and the module's Go version.
//
// It imports only the standard library and golang.org/x/tools.
package lintkit
