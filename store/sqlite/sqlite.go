package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/store"
)

// FileName is the database's name inside pulse's data directory.
const FileName = "pulse.db"

// ErrLocked is returned by Open when another process (or another Store in
// this one) has the database open.
var ErrLocked = errors.New("sqlite: database is in use by another pulse")

// Defaults for Options' zero values.
const (
	DefaultBatchDelay     = 0
	DefaultMaxBatchEvents = 2000
	DefaultBusyTimeout    = 5 * time.Second
	DefaultReadConns      = 4
	defaultPruneChunk     = 5000
	walSizeLimit          = 64 << 20 // bytes the WAL file is truncated to after a checkpoint
)

// Options tune a Store. The zero value is the recommended setting.
type Options struct {
	// BatchDelay is how long the writer waits, after the first Append of a
	// batch arrives, for others to join the same commit. Zero adds no wait:
	// a batch is every Append that queued while the previous commit was
	// syncing, which already groups concurrent callers without delaying a
	// lone one (see BenchmarkAppend for the figures).
	BatchDelay time.Duration
	// MaxBatchEvents caps the events of one commit (default 2000). An
	// Append larger than that is committed alone, never split.
	MaxBatchEvents int
	// BusyTimeout is how long an operation waits for a lock held by another
	// process, such as a sqlite3 shell writing to the file (default 5s).
	BusyTimeout time.Duration
	// ReadConns is the number of connections serving queries (default 4).
	// WAL lets them read while the writer commits.
	ReadConns int

	// For tests and benchmarks in this package.
	synchronous string      // default "FULL"; see docs/storage.md
	migrations  []migration // default migrations()
	maxBatch1   bool        // one transaction per Append: the benchmark's baseline
	pruneChunk  int         // rows per Prune transaction; default defaultPruneChunk
}

// Stats counts the writer's work since Open.
type Stats struct {
	Commits uint64 // transactions committed by the writer
	Appends uint64 // Append calls committed
	Events  uint64 // events committed
	Panics  uint64 // panics recovered in the writer (a bug; each failed its batch)
}

// Store is the SQLite store.Store. Open starts its writer goroutine; Close
// stops it.
type Store struct {
	path string
	opts Options
	w    *sql.DB // one connection: the writer goroutine and the other writes
	r    *sql.DB // query_only connections for reads

	lock *os.File // flock on path+".lock" while open

	// INSERTs of one and of maxRowsPerInsert events, prepared at Open (the
	// write pool's one connection is the writer's once it runs), and the
	// writer goroutine's argument buffer.
	insertOne, insertMax *sql.Stmt
	args                 []any

	// Appends hand requests to the writer through reqs; stop ends it once
	// no call is in flight, and done closes when it has returned.
	reqs chan *request
	stop chan struct{}
	done chan struct{}

	mu       sync.RWMutex // guards closed against inflight.Add
	closed   bool
	inflight sync.WaitGroup
	once     sync.Once
	closeErr error

	commits, appends, events, panics atomic.Uint64
}

var _ store.Store = (*Store)(nil)

// Open opens, creating if needed, the database at path (conventionally
// filepath.Join(dataDir, FileName)), migrates its schema to this build's
// version, and starts the writer goroutine that Close stops. It refuses a
// database whose schema is newer (ErrSchemaTooNew).
func Open(ctx context.Context, path string, opts Options) (_ *Store, err error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path; pass the data directory's pulse.db")
	}
	switch {
	case opts.BatchDelay < 0:
		return nil, fmt.Errorf("sqlite: BatchDelay %s is negative", opts.BatchDelay)
	case opts.MaxBatchEvents < 0:
		return nil, fmt.Errorf("sqlite: MaxBatchEvents %d is negative", opts.MaxBatchEvents)
	case opts.BusyTimeout < 0:
		return nil, fmt.Errorf("sqlite: BusyTimeout %s is negative", opts.BusyTimeout)
	case opts.ReadConns < 0:
		return nil, fmt.Errorf("sqlite: ReadConns %d is negative", opts.ReadConns)
	}
	if opts.MaxBatchEvents == 0 {
		opts.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if opts.BusyTimeout == 0 {
		opts.BusyTimeout = DefaultBusyTimeout
	}
	if opts.ReadConns == 0 {
		opts.ReadConns = DefaultReadConns
	}
	if opts.synchronous == "" {
		opts.synchronous = "FULL"
	}
	if opts.pruneChunk == 0 {
		opts.pruneChunk = defaultPruneChunk
	}
	if opts.migrations == nil {
		opts.migrations = migrations()
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: database path %q: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, fmt.Errorf("sqlite: create data directory for %s: %w", abs, err)
	}
	// Two monitors on one database would interleave their sequences.
	lock, err := lockFile(abs + ".lock")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = lock.Close()
		}
	}()

	busy := strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10)
	wq := url.Values{}
	wq.Set("_busy_timeout", busy)
	wq.Set("_txlock", "immediate") // take the write lock at BEGIN, where busy_timeout applies
	wq.Add("_pragma", "journal_mode(WAL)")
	wq.Add("_pragma", "synchronous("+opts.synchronous+")")
	wq.Add("_pragma", "foreign_keys(0)")
	wq.Add("_pragma", "journal_size_limit("+strconv.Itoa(walSizeLimit)+")")
	rq := url.Values{}
	rq.Set("_busy_timeout", busy)
	rq.Set("_query_only", "1")

	w, err := openDB(abs, wq)
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	defer func() {
		if err != nil {
			_ = w.Close()
		}
	}()
	var mode string
	if err := w.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, wrapErr(err))
	}
	if !strings.EqualFold(mode, "wal") {
		return nil, fmt.Errorf("sqlite: %s is in journal mode %q, not WAL (is the data directory on a network filesystem?); put it on a local disk", abs, mode)
	}
	if err := migrate(ctx, w, abs, opts.migrations); err != nil {
		return nil, err
	}
	one, err := w.PrepareContext(ctx, insertSQL(1))
	if err != nil {
		return nil, fmt.Errorf("sqlite: prepare insert in %s: %w", abs, err)
	}
	many, err := w.PrepareContext(ctx, insertSQL(maxRowsPerInsert))
	if err != nil {
		return nil, fmt.Errorf("sqlite: prepare insert in %s: %w", abs, err)
	}
	r, err := openDB(abs, rq)
	if err != nil {
		return nil, err
	}
	r.SetMaxOpenConns(opts.ReadConns)
	r.SetMaxIdleConns(opts.ReadConns)

	s := &Store{
		path:      abs,
		opts:      opts,
		w:         w,
		r:         r,
		lock:      lock,
		insertOne: one,
		insertMax: many,
		reqs:      make(chan *request, 256),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	go s.writeLoop()
	return s, nil
}

func openDB(path string, q url.Values) (*sql.DB, error) {
	// A file: URI escapes '?', '#' and '%' in the path, which a plain name
	// would cut at.
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	c, err := sqlite.NewConnector(u.String())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return sql.OpenDB(c), nil
}

// Path returns the database file's absolute path.
func (s *Store) Path() string { return s.path }

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Appends: s.appends.Load(), Events: s.events.Load(), Panics: s.panics.Load()}
}

// enter admits an operation unless the store is closed; leave ends it.
// Close waits for admitted operations, so pending Appends are flushed.
func (s *Store) enter() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.ErrClosed
	}
	s.inflight.Add(1)
	return nil
}

func (s *Store) leave() { s.inflight.Done() }

// Close waits for operations in flight (pending Appends are committed and
// acknowledged), stops the writer and closes the database. It is
// idempotent; concurrent calls wait for the first to finish.
func (s *Store) Close() error {
	first := false
	s.once.Do(func() {
		first = true
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.inflight.Wait()
		close(s.stop)
		<-s.done
		// Keep the planner's statistics current, bounded to a quick sample
		// (SQLite's advice for long-lived connections). Best effort.
		_, _ = s.w.ExecContext(context.Background(), `PRAGMA analysis_limit = 1000; PRAGMA optimize`)
		s.closeErr = errors.Join(s.r.Close(), s.insertOne.Close(), s.insertMax.Close(), s.w.Close(), s.lock.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("sqlite: close %s: %w", s.path, s.closeErr)
		}
	})
	if !first {
		return nil
	}
	return s.closeErr
}

// Events implements store.Store.
func (s *Store) Events(ctx context.Context, q store.Query) ([]store.Event, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	query, args, ok := buildQuery(q)
	if !ok {
		return []store.Event{}, nil
	}
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, s.fail(ctx, "query events", err)
	}
	defer rows.Close()
	out := make([]store.Event, 0, min(q.EffectiveLimit(), 256))
	for rows.Next() {
		var (
			e      store.Event
			seq    int64
			timeNS int64
		)
		if err := rows.Scan(&seq, &timeNS, &e.Service, &e.Instance, &e.Zone, &e.From, &e.To, &e.Reason, &e.Source, &e.TraceID); err != nil {
			return nil, s.fail(ctx, "read events", err)
		}
		e.Seq = uint64(seq)
		e.Time = time.Unix(0, timeNS).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, "read events", err)
	}
	return out, nil
}

// buildQuery returns the SQL for q, or ok=false when q can match nothing.
func buildQuery(q store.Query) (query string, args []any, ok bool) {
	var b strings.Builder
	b.WriteString(`SELECT seq, time_ns, service, instance, zone, from_state, to_state, reason, source, trace_id FROM events`)
	// Without statistics (a young database) the planner picks the
	// service+time index for service+instance queries and scans the whole
	// table for time windows; name the index where the choice is clear.
	switch {
	case q.Service != "" && q.Instance != "":
		b.WriteString(" INDEXED BY events_service_instance_time")
	case q.Service == "" && q.Instance == "" && q.AfterSeq == 0 && (!q.Since.IsZero() || !q.Until.IsZero()):
		b.WriteString(" INDEXED BY events_time")
	}
	sep := " WHERE "
	cond := func(c string, v any) {
		b.WriteString(sep)
		b.WriteString(c)
		sep = " AND "
		args = append(args, v)
	}
	if q.Service != "" {
		cond("service = ?", q.Service)
	}
	if q.Instance != "" {
		cond("instance = ?", q.Instance)
	}
	if !q.Since.IsZero() {
		ns, cmp := clampNS(q.Since)
		switch {
		case cmp > 0:
			return "", nil, false // after every storable time
		case cmp == 0:
			cond("time_ns >= ?", ns)
		}
	}
	if !q.Until.IsZero() {
		ns, cmp := clampNS(q.Until)
		switch {
		case cmp < 0:
			return "", nil, false // before every storable time
		case cmp == 0:
			cond("time_ns < ?", ns)
		}
	}
	if q.AfterSeq > 0 {
		if q.AfterSeq >= math.MaxInt64 {
			return "", nil, false
		}
		cond("seq > ?", int64(q.AfterSeq))
	}
	if q.Desc {
		b.WriteString(" ORDER BY seq DESC")
	} else {
		b.WriteString(" ORDER BY seq")
	}
	b.WriteString(" LIMIT ?")
	args = append(args, q.EffectiveLimit())
	return b.String(), args, true
}

// clampNS returns t as Unix nanoseconds and 0, or -1/+1 when t is before or
// after the storable range.
func clampNS(t time.Time) (int64, int) {
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		return 0, -1
	case t.After(time.Unix(0, math.MaxInt64)):
		return 0, 1
	}
	return t.UnixNano(), 0
}

// LastSeq implements store.Store.
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var last int64
	if err := s.r.QueryRowContext(ctx, `SELECT last_seq FROM seq_state WHERE id = 1`).Scan(&last); err != nil {
		return 0, s.fail(ctx, "read last seq", err)
	}
	return uint64(last), nil
}

// SaveInstances implements store.Store.
func (s *Store) SaveInstances(ctx context.Context, instances []store.Instance) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(instances) == 0 {
		return nil
	}
	type row struct {
		in     store.Instance
		labels sql.NullString
	}
	rows := make([]row, len(instances))
	for i, in := range instances {
		if err := in.Validate(); err != nil {
			return err
		}
		rows[i].in = in
		if len(in.Labels) > 0 {
			b, err := json.Marshal(in.Labels) // sorted keys: stable text for sqlite3 users
			if err != nil {
				return fmt.Errorf("sqlite: encode labels of %s/%s: %w", in.Service, in.Instance, err)
			}
			rows[i].labels = sql.NullString{String: string(b), Valid: true}
		}
	}
	return s.writeTx(ctx, "save instances", func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO instances
			(service, instance, zone, labels, state, since_ns, reason, last_beat_ns, last_probe_ns,
			 mean_interval_ns, dev_interval_ns, rtt_ns, updated_ns)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, r := range rows {
			in := r.in
			if _, err := st.ExecContext(ctx, in.Service, in.Instance, in.Zone, r.labels, in.State, nullNS(in.Since), in.Reason,
				nullNS(in.LastBeat), nullNS(in.LastProbe), int64(in.MeanInterval), int64(in.DevInterval), int64(in.RTT), nullNS(in.UpdatedAt)); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteInstances implements store.Store.
func (s *Store) DeleteInstances(ctx context.Context, keys []store.Key) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	return s.writeTx(ctx, "delete instances", func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `DELETE FROM instances WHERE service = ? AND instance = ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, k := range keys {
			if _, err := st.ExecContext(ctx, k.Service, k.Instance); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadInstances implements store.Store.
func (s *Store) LoadInstances(ctx context.Context) ([]store.Instance, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT service, instance, zone, labels, state, since_ns, reason,
		last_beat_ns, last_probe_ns, mean_interval_ns, dev_interval_ns, rtt_ns, updated_ns
		FROM instances ORDER BY service, instance`)
	if err != nil {
		return nil, s.fail(ctx, "load instances", err)
	}
	defer rows.Close()
	var out []store.Instance
	for rows.Next() {
		var (
			in                                 store.Instance
			labels                             sql.NullString
			since, beat, probe, updated        sql.NullInt64
			meanInterval, devInterval, rttNano int64
		)
		if err := rows.Scan(&in.Service, &in.Instance, &in.Zone, &labels, &in.State, &since, &in.Reason,
			&beat, &probe, &meanInterval, &devInterval, &rttNano, &updated); err != nil {
			return nil, s.fail(ctx, "load instances", err)
		}
		if labels.Valid && labels.String != "" && labels.String != "{}" {
			if err := json.Unmarshal([]byte(labels.String), &in.Labels); err != nil {
				return nil, fmt.Errorf("sqlite: instance %s/%s in %s has malformed labels %q (fix or NULL the instances.labels column): %w",
					in.Service, in.Instance, s.path, labels.String, err)
			}
		}
		in.Since, in.LastBeat, in.LastProbe, in.UpdatedAt = fromNS(since), fromNS(beat), fromNS(probe), fromNS(updated)
		in.MeanInterval, in.DevInterval, in.RTT = time.Duration(meanInterval), time.Duration(devInterval), time.Duration(rttNano)
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, "load instances", err)
	}
	return out, nil
}

// Prune implements store.Store. It deletes in chunks, each its own short
// transaction, so a large expiry never holds the write lock for long and
// Appends keep flowing between chunks.
func (s *Store) Prune(ctx context.Context, before time.Time) (int64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	ns, cmp := clampNS(before)
	switch {
	case before.IsZero() || cmp < 0:
		return 0, nil
	case cmp > 0:
		ns = math.MaxInt64 // after every storable time: everything goes (the event at MaxInt64 stays; it is not before)
	}
	var total int64
	for {
		res, err := s.w.ExecContext(ctx, `DELETE FROM events WHERE seq IN
			(SELECT seq FROM events WHERE time_ns < ? LIMIT ?)`, ns, s.opts.pruneChunk)
		if err != nil {
			return total, s.fail(ctx, "prune events", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, s.fail(ctx, "prune events", err)
		}
		total += n
		if n < int64(s.opts.pruneChunk) {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// IntegrityCheck runs PRAGMA integrity_check and returns an error listing
// the problems unless SQLite answers "ok".
func (s *Store) IntegrityCheck(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	rows, err := s.r.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return s.fail(ctx, "integrity check", err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return s.fail(ctx, "integrity check", err)
		}
		lines = append(lines, l)
	}
	if err := rows.Err(); err != nil {
		return s.fail(ctx, "integrity check", err)
	}
	if len(lines) == 1 && lines[0] == "ok" {
		return nil
	}
	return fmt.Errorf("sqlite: %s failed its integrity check (restore a backup, see docs/storage.md): %s", s.path, strings.Join(lines, "; "))
}

// writeTx runs fn in a transaction on the write connection.
func (s *Store) writeTx(ctx context.Context, what string, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail(ctx, what, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return s.fail(ctx, what, err)
	}
	if err := tx.Commit(); err != nil {
		return s.fail(ctx, what, err)
	}
	return nil
}

// fail wraps a database error for callers: the context's own error when
// it ended (the driver reports an interrupt), a timeout class for a lock
// held too long by another process.
func (s *Store) fail(ctx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("sqlite: %s: %w", what, cerr)
	}
	return fmt.Errorf("sqlite: %s in %s: %w", what, s.path, wrapErr(err))
}

// wrapErr classifies driver errors.
func wrapErr(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY {
		return status.WithClass(status.ClassTimeout, fmt.Errorf("database locked by another connection past the busy timeout (is a sqlite3 shell holding a write transaction?): %w", err))
	}
	return err
}

func nullNS(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

func fromNS(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}
