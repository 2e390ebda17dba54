// Package sqlite owns pulse's on-disk history: a store.Store kept in one
// SQLite file (pulse-data/pulse.db) through modernc.org/sqlite, pure Go.
//
// It owns the schema and its migrations (schema.go), the connection
// settings (WAL, synchronous=FULL, busy timeout), and the group-commit
// writer (writer.go): one goroutine that gathers concurrent Appends into a
// single transaction, so an fsync is paid per batch instead of per event,
// and acknowledges each caller only after the commit. docs/storage.md
// documents the file for people who query it with sqlite3.
package sqlite
