// Package store owns pulse's history: the Store interface (append
// transition events, query them by service, instance and time, save and
// load instance snapshots so a restarted monitor resumes where it was, and
// retention), the types that cross it, and nothing about any backend.
// store/sqlite is the embedded backend, store/memory the in-process one for
// tests and the demo; store/storetest is the conformance suite every backend
// must pass.
package store
