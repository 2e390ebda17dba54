package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrSchemaTooNew is returned by Open for a database written by a newer
// pulse, whose schema this build does not know.
var ErrSchemaTooNew = errors.New("sqlite: database schema is newer than this pulse supports")

// migration moves the schema from version-1 to version. Its statements run
// in the one transaction that applies every pending migration, so a
// database is either fully upgraded or untouched.
type migration struct {
	version     int
	description string
	stmts       []string
}

// migrations is the schema's history. Append new versions; never edit a
// released one (databases in the field already ran it). docs/storage.md
// documents the result and must follow every change here.
func migrations() []migration {
	return []migration{{
		version:     1,
		description: "events, instances, seq_state, readable views",
		stmts: []string{
			// seq is the rowid: lookups and AfterSeq ranges use the table's
			// own b-tree. Times are Unix nanoseconds, UTC. Not STRICT, so
			// sqlite3 shells older than 3.37 can still read the file.
			`CREATE TABLE events (
				seq        INTEGER PRIMARY KEY,
				time_ns    INTEGER NOT NULL,
				service    TEXT NOT NULL DEFAULT '',
				instance   TEXT NOT NULL DEFAULT '',
				zone       TEXT NOT NULL DEFAULT '',
				from_state TEXT NOT NULL DEFAULT '',
				to_state   TEXT NOT NULL DEFAULT '',
				reason     TEXT NOT NULL DEFAULT '',
				source     TEXT NOT NULL DEFAULT '',
				trace_id   TEXT NOT NULL DEFAULT ''
			)`,
			`CREATE INDEX events_service_time ON events (service, time_ns)`,
			`CREATE INDEX events_service_instance_time ON events (service, instance, time_ns)`,
			// Time-only queries and Prune.
			`CREATE INDEX events_time ON events (time_ns)`,
			`CREATE TABLE instances (
				service          TEXT NOT NULL,
				instance         TEXT NOT NULL,
				zone             TEXT NOT NULL DEFAULT '',
				labels           TEXT,
				state            TEXT NOT NULL DEFAULT '',
				since_ns         INTEGER,
				reason           TEXT NOT NULL DEFAULT '',
				last_beat_ns     INTEGER,
				last_probe_ns    INTEGER,
				mean_interval_ns INTEGER NOT NULL DEFAULT 0,
				dev_interval_ns  INTEGER NOT NULL DEFAULT 0,
				rtt_ns           INTEGER NOT NULL DEFAULT 0,
				updated_ns       INTEGER,
				PRIMARY KEY (service, instance)
			) WITHOUT ROWID`,
			// The highest Seq ever appended: MAX(seq) would fall back when
			// Prune empties the table, and a restarted monitor would reuse
			// sequence numbers that watchers already saw.
			`CREATE TABLE seq_state (
				id       INTEGER PRIMARY KEY CHECK (id = 1),
				last_seq INTEGER NOT NULL
			)`,
			`INSERT INTO seq_state (id, last_seq) VALUES (1, 0)`,
			// For people with a sqlite3 shell: the same rows with readable times.
			`CREATE VIEW events_readable AS
				SELECT seq,
					strftime('%Y-%m-%dT%H:%M:%fZ', time_ns / 1000000000.0, 'unixepoch') AS time,
					service, instance, zone, from_state, to_state, reason, source, trace_id
				FROM events`,
			`CREATE VIEW instances_readable AS
				SELECT service, instance, zone, labels, state,
					strftime('%Y-%m-%dT%H:%M:%fZ', since_ns / 1000000000.0, 'unixepoch') AS since,
					reason,
					strftime('%Y-%m-%dT%H:%M:%fZ', last_beat_ns / 1000000000.0, 'unixepoch') AS last_beat,
					strftime('%Y-%m-%dT%H:%M:%fZ', last_probe_ns / 1000000000.0, 'unixepoch') AS last_probe,
					mean_interval_ns / 1000000.0 AS mean_interval_ms,
					dev_interval_ns / 1000000.0 AS dev_interval_ms,
					rtt_ns / 1000000.0 AS rtt_ms,
					strftime('%Y-%m-%dT%H:%M:%fZ', updated_ns / 1000000000.0, 'unixepoch') AS updated
				FROM instances`,
		},
	}}
}

// migrate brings the database at path to the newest version in migs, in one
// transaction. The write pool begins transactions IMMEDIATE, so two
// processes opening the same new file do not both migrate it.
func migrate(ctx context.Context, db *sql.DB, path string, migs []migration) (err error) {
	for i, m := range migs {
		if m.version != i+1 {
			return fmt.Errorf("sqlite: migration list is not 1..n: entry %d has version %d", i, m.version)
		}
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin migration of %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version     INTEGER PRIMARY KEY,
		description TEXT NOT NULL,
		applied_ns  INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("sqlite: create schema_version in %s: %w", path, err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&cur); err != nil {
		return fmt.Errorf("sqlite: read schema version of %s: %w", path, err)
	}
	latest := len(migs)
	if cur > latest {
		return fmt.Errorf("%w: %s has schema version %d, this build knows versions up to %d; run the newer pulse that wrote it, or use another data directory",
			ErrSchemaTooNew, path, cur, latest)
	}
	for _, m := range migs[cur:] {
		for _, stmt := range m.stmts {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("sqlite: migrate %s to version %d (%s): %w", path, m.version, m.description, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, description, applied_ns) VALUES (?, ?, ?)`,
			m.version, m.description, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("sqlite: record schema version %d in %s: %w", m.version, path, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit migration of %s: %w", path, err)
	}
	return nil
}
