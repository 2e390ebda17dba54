// Package incidents owns the replay suite: one test file per anti-pattern
// of ../shared/INCIDENTS.md (ap01_… to ap17_…), each replaying its incident
// against pulse's real packages and binaries with real faults (toxiproxy
// for TCP, internal/faultnet for UDP), asserting the pass criterion
// exactly, and a _naive variant that runs the seed's anti-pattern through
// the same scenario and asserts that it fails. The package has no code of
// its own outside tests.
package incidents
