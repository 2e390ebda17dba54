// Package healthep owns the HTTP endpoint comparisons: pulse's /livez
// (20 registered checks, one of them hung forever) against a bare handler
// that writes "ok", and pulse's HTTP beat endpoint (POST /api/v1/beat:
// bearer check, JSON decode, replay window, queue) against a bare handler
// that reads the same body and answers 204. The servers run in one child
// process and a Go load generator (keep-alive HTTP/1.1, parallel
// connections) in another; targets are interleaved over rounds.
package healthep
