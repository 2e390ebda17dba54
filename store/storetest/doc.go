// Package storetest owns the conformance suite every store.Store backend
// must pass: Run for the contract any backend keeps, RunPersistent for
// backends whose data outlives the process (reopen, flush on Close, and a
// kill -9 during heavy writes in a child process).
//
// A backend's test package calls them from its tests, and calls CrashChild
// first thing in TestMain so the child process of the kill test can run.
package storetest
