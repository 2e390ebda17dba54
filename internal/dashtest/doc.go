// Package dashtest owns the dashboard's browser test: it starts a real
// pulse daemon in process with a small fleet of real heartbeat senders
// over UDP and real HTTPS probe targets, drives Debian's chromium through
// chromedp, and checks that the pages show what the API says, live. With
// PULSE_SCREENSHOTS=1 it also writes the screenshots in docs/img.
//
// The package has no non-test code.
package dashtest
