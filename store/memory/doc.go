// Package memory owns pulse's in-memory store.Store: history that lives as
// long as the process, for the monitor's tests and for `pulse demo` without
// --data. It passes the same conformance suite (store/storetest) as the
// SQLite backend, so code tested against it behaves the same on disk.
package memory
