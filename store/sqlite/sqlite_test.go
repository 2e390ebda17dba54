package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/store"
	"github.com/fb4b1dcc/pulse/store/storetest"
)

func persistent() storetest.Persistent {
	return storetest.Persistent{
		Open: func(dir string) (store.Store, error) {
			return Open(context.Background(), filepath.Join(dir, FileName), Options{})
		},
		Check: func(dir string) error {
			s, err := Open(context.Background(), filepath.Join(dir, FileName), Options{})
			if err != nil {
				return err
			}
			return errors.Join(s.IntegrityCheck(context.Background()), s.Close())
		},
	}
}

func TestMain(m *testing.M) {
	if code, ok := storetest.CrashChild(persistent()); ok {
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}

func openTest(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), FileName), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t, Options{}) })
}

// The suite again with a linger, so batches hold several Appends.
func TestConformanceBatchDelay(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t, Options{BatchDelay: time.Millisecond}) })
}

func TestPersistent(t *testing.T) {
	storetest.RunPersistent(t, persistent())
}

func ev(seq uint64) store.Event {
	return store.Event{Seq: seq, Time: time.Date(2025, 1, 1, 0, 0, 0, int(seq), time.UTC), Service: "a", Instance: "x", Reason: "r"}
}

func TestSettings(t *testing.T) {
	s := openTest(t, Options{BusyTimeout: 1234 * time.Millisecond})
	ctx := t.Context()
	for _, c := range []struct {
		pragma string
		db     *sql.DB
		want   string
	}{
		{"journal_mode", s.w, "wal"},
		{"synchronous", s.w, "2"}, // FULL
		{"busy_timeout", s.w, "1234"},
		{"foreign_keys", s.w, "0"},
		{"journal_size_limit", s.w, "67108864"},
		{"journal_mode", s.r, "wal"},
		{"busy_timeout", s.r, "1234"},
		{"query_only", s.r, "1"},
	} {
		var got string
		if err := c.db.QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", c.pragma, err)
		}
		if got != c.want {
			t.Errorf("PRAGMA %s = %s, want %s", c.pragma, got, c.want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := t.Context()
	if _, err := Open(ctx, "", Options{}); err == nil {
		t.Error("Open with an empty path succeeded")
	}
	for _, o := range []Options{{BatchDelay: -1}, {MaxBatchEvents: -1}, {BusyTimeout: -1}, {ReadConns: -1}} {
		if _, err := Open(ctx, filepath.Join(t.TempDir(), FileName), o); err == nil {
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
	// Not a database.
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, []byte("this is not an sqlite file, it is long enough to have a header ........................................"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(ctx, path, Options{}); err == nil {
		s.Close()
		t.Error("Open of a text file succeeded")
	}
	// A path with characters a URI would cut at.
	odd := filepath.Join(t.TempDir(), "we?ird#dir%20", FileName)
	s, err := Open(ctx, odd, Options{})
	if err != nil {
		t.Fatalf("Open(%q): %v", odd, err)
	}
	if err := s.Append(ctx, []store.Event{ev(1)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(odd); err != nil {
		t.Errorf("database not at %q: %v", odd, err)
	}
}

func TestSchema(t *testing.T) {
	s := openTest(t, Options{})
	var (
		version int
		desc    string
	)
	if err := s.r.QueryRowContext(t.Context(), `SELECT version, description FROM schema_version ORDER BY version DESC LIMIT 1`).Scan(&version, &desc); err != nil {
		t.Fatal(err)
	}
	if want := len(migrations()); version != want {
		t.Errorf("schema version %d, want %d", version, want)
	}
	// The readable views work, for docs/storage.md's examples.
	if err := s.Append(t.Context(), []store.Event{{Seq: 1, Time: time.Date(2025, 1, 2, 3, 4, 5, 678000000, time.UTC), Service: "a"}}); err != nil {
		t.Fatal(err)
	}
	var tm string
	if err := s.r.QueryRowContext(t.Context(), `SELECT time FROM events_readable WHERE seq = 1`).Scan(&tm); err != nil {
		t.Fatal(err)
	}
	if tm != "2025-01-02T03:04:05.678Z" {
		t.Errorf("events_readable.time = %q, want 2025-01-02T03:04:05.678Z", tm)
	}
}

func TestSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(t.Context(), []store.Event{ev(1)}); err != nil {
		t.Fatal(err)
	}
	// A future pulse migrated this file further.
	if _, err := s.w.ExecContext(t.Context(), `INSERT INTO schema_version VALUES (99, 'from the future', 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(t.Context(), path, Options{})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: %v, want ErrSchemaTooNew", err)
	}
	for _, want := range []string{"version 99", "up to 1", path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	v1 := migrations()
	s, err := Open(t.Context(), path, Options{migrations: v1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(t.Context(), []store.Event{ev(1)}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A migration that fails halfway leaves the database as it was.
	broken := append(slices.Clone(v1), migration{version: 2, description: "broken", stmts: []string{
		`CREATE TABLE half (x INTEGER)`,
		`THIS IS NOT SQL`,
	}})
	if _, err := Open(t.Context(), path, Options{migrations: broken}); err == nil || !strings.Contains(err.Error(), "version 2 (broken)") {
		t.Fatalf("Open with a broken migration: %v, want an error naming it", err)
	}
	// A good migration applies on top, once, and keeps the data.
	good := append(slices.Clone(v1), migration{version: 2, description: "add notes", stmts: []string{
		`CREATE TABLE notes (x INTEGER)`,
	}})
	for range 2 {
		s, err = Open(t.Context(), path, Options{migrations: good})
		if err != nil {
			t.Fatal(err)
		}
		var tables, versions int
		if err := s.r.QueryRowContext(t.Context(), `SELECT count(*) FROM sqlite_schema WHERE name IN ('half', 'notes')`).Scan(&tables); err != nil {
			t.Fatal(err)
		}
		if err := s.r.QueryRowContext(t.Context(), `SELECT count(*) FROM schema_version`).Scan(&versions); err != nil {
			t.Fatal(err)
		}
		if tables != 1 || versions != 2 {
			t.Errorf("after migrating: %d of the tables half/notes (want notes only), %d schema_version rows (want 2)", tables, versions)
		}
		got, err := s.Events(t.Context(), store.Query{})
		if err != nil || len(got) != 1 {
			t.Errorf("events after migration: %v, %v", got, err)
		}
		s.Close()
	}
	bad := []migration{{version: 2}}
	if _, err := Open(t.Context(), filepath.Join(t.TempDir(), FileName), Options{migrations: bad}); err == nil {
		t.Error("a migration list not numbered 1..n was accepted")
	}
}

// TestQueryPlans checks that the queries the store builds are served by
// the indexes, not by scanning the table.
func TestQueryPlans(t *testing.T) {
	s := openTest(t, Options{})
	since := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		q    store.Query
		want string
	}{
		{store.Query{Service: "a", Since: since}, "USING INDEX events_service_time (service=? AND time_ns>?)"},
		{store.Query{Service: "a", Instance: "x", Since: since, Until: since.Add(time.Hour)}, "USING INDEX events_service_instance_time (service=? AND instance=? AND time_ns>? AND time_ns<?)"},
		{store.Query{Service: "a", Instance: "x"}, "USING INDEX events_service_instance_time (service=? AND instance=?)"},
		{store.Query{AfterSeq: 10}, "USING INTEGER PRIMARY KEY (rowid>?)"},
		{store.Query{Since: since}, "USING INDEX events_time (time_ns>?)"},
	} {
		query, args, ok := buildQuery(c.q)
		if !ok {
			t.Fatalf("%+v: no query", c.q)
		}
		rows, err := s.r.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, " | ")
		if !strings.Contains(joined, c.want) || strings.Contains(joined, "SCAN events") {
			t.Errorf("%+v: plan %q, want it to use %q", c.q, joined, c.want)
		}
	}
	// Prune's inner select.
	var detail string
	if err := s.r.QueryRowContext(t.Context(), `EXPLAIN QUERY PLAN SELECT seq FROM events WHERE time_ns < ? LIMIT ?`, 1, 1).Scan(new(int), new(int), new(int), &detail); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(detail, "events_time") {
		t.Errorf("prune plan %q does not use events_time", detail)
	}
}

// TestGroupCommit checks that concurrent Appends share transactions.
func TestGroupCommit(t *testing.T) {
	s := openTest(t, Options{BatchDelay: 200 * time.Millisecond})
	const callers = 64
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make(chan error, callers)
	)
	for i := range callers {
		wg.Go(func() {
			<-start
			errs <- s.Append(t.Context(), []store.Event{ev(uint64(i + 1))})
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.Appends != callers || st.Events != callers {
		t.Fatalf("stats %+v, want %d appends and events", st, callers)
	}
	// All 64 arrive within the 200 ms linger of the first; allow a few
	// batches for a loaded machine, far fewer than one per Append.
	if st.Commits > 4 {
		t.Errorf("%d commits for %d concurrent Appends, want at most 4", st.Commits, callers)
	}
	t.Logf("%d concurrent Appends in %d commits", callers, st.Commits)
}

// TestBatchIsolation: a bad Append in a batch fails alone.
func TestBatchIsolation(t *testing.T) {
	s := openTest(t, Options{BatchDelay: 200 * time.Millisecond})
	if err := s.Append(t.Context(), []store.Event{ev(1)}); err != nil {
		t.Fatal(err)
	}
	before := s.Stats().Commits
	var wg sync.WaitGroup
	var dupErr, okErr, ok2Err error
	start := make(chan struct{})
	wg.Go(func() { <-start; okErr = s.Append(t.Context(), []store.Event{ev(2), ev(3)}) })
	wg.Go(func() { <-start; dupErr = s.Append(t.Context(), []store.Event{ev(4), ev(1)}) })
	wg.Go(func() { <-start; ok2Err = s.Append(t.Context(), []store.Event{ev(5)}) })
	close(start)
	wg.Wait()
	if okErr != nil || ok2Err != nil {
		t.Fatalf("good Appends failed: %v, %v", okErr, ok2Err)
	}
	if !errors.Is(dupErr, store.ErrDuplicateSeq) || !strings.Contains(dupErr.Error(), "seq 1") {
		t.Fatalf("duplicate Append: %v, want ErrDuplicateSeq naming seq 1", dupErr)
	}
	if c := s.Stats().Commits - before; c != 1 {
		t.Fatalf("%d commits, want the three Appends in one batch (1 commit) for this test to mean anything", c)
	}
	got, err := s.Events(t.Context(), store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, e := range got {
		seqs = append(seqs, e.Seq)
	}
	if !slices.Equal(seqs, []uint64{1, 2, 3, 5}) {
		t.Errorf("stored %v, want [1 2 3 5] (4 went with the failed Append)", seqs)
	}
	if n, _ := s.LastSeq(t.Context()); n != 5 {
		t.Errorf("LastSeq %d, want 5", n)
	}
}

// TestLockedByAnotherProcess: while another connection holds the write
// lock (a sqlite3 shell in a transaction), Append honours its deadline,
// and an Append that timed out is not stored later.
func TestLockedByAnotherProcess(t *testing.T) {
	s := openTest(t, Options{BusyTimeout: 10 * time.Second})
	ctx := t.Context()
	if err := s.Append(ctx, []store.Event{ev(1)}); err != nil {
		t.Fatal(err)
	}
	other, err := openDB(s.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	err = s.Append(short, []store.Event{ev(2)})
	took := time.Since(began)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append under a held lock: %v, want DeadlineExceeded", err)
	}
	if status.Classify(err) != status.ClassTimeout {
		t.Errorf("class %q, want timeout", status.Classify(err))
	}
	if took > 2*time.Second {
		t.Errorf("Append took %s to honour a 100ms deadline", took)
	}
	// Reads go on meanwhile (WAL).
	if got, err := s.Events(ctx, store.Query{}); err != nil || len(got) != 1 {
		t.Errorf("read during the lock: %d events, %v", len(got), err)
	}

	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, []store.Event{ev(3)}); err != nil {
		t.Fatalf("Append after the lock was released: %v", err)
	}
	got, err := s.Events(ctx, store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, e := range got {
		seqs = append(seqs, e.Seq)
	}
	if !slices.Equal(seqs, []uint64{1, 3}) {
		t.Errorf("stored %v, want [1 3]: the timed-out Append of 2 must not be written", seqs)
	}
}

// TestBusyTimeout: with no caller deadline, a lock held past the busy
// timeout fails the Append with a timeout-class error that says why.
func TestBusyTimeout(t *testing.T) {
	s := openTest(t, Options{BusyTimeout: 100 * time.Millisecond})
	ctx := t.Context()
	other, err := openDB(s.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	err = s.Append(ctx, []store.Event{ev(1)})
	if err == nil || status.Classify(err) != status.ClassTimeout || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("Append past the busy timeout: %v (class %q), want a timeout-class 'locked' error", err, status.Classify(err))
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, []store.Event{ev(1)}); err != nil {
		t.Fatalf("Append after the lock: %v", err)
	}
}

// TestPruneChunks deletes more than one chunk.
func TestPruneChunks(t *testing.T) {
	s := openTest(t, Options{pruneChunk: 100})
	const n = 2*100 + 17
	events := make([]store.Event, n)
	for i := range events {
		events[i] = ev(uint64(i + 1))
	}
	if err := s.Append(t.Context(), events); err != nil {
		t.Fatal(err)
	}
	got, err := s.Prune(t.Context(), time.Date(2025, 1, 1, 0, 0, 0, n-10, time.UTC))
	if err != nil || got != n-11 {
		t.Fatalf("Prune: %d, %v; want %d", got, err, n-11)
	}
	left, err := s.Events(t.Context(), store.Query{})
	if err != nil || len(left) != 11 || left[0].Seq != n-10 {
		t.Fatalf("left %d events from %v, %v; want 11 from seq %d", len(left), left[0].Seq, err, n-10)
	}
}

func TestIntegrityCheckReportsCorruption(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	events := make([]store.Event, 300)
	for i := range events {
		events[i] = ev(uint64(i + 1))
		events[i].Reason = strings.Repeat("r", 1000)
	}
	if err := s.Append(t.Context(), events); err != nil {
		t.Fatal(err)
	}
	if err := s.IntegrityCheck(t.Context()); err != nil {
		t.Fatalf("fresh database: %v", err)
	}
	s.Close() // checkpoints the WAL into the file
	// Overwrite a page in the middle of the file.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	if _, err := f.WriteAt(make([]byte, 4096), st.Size()/2/4096*4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s, err = Open(t.Context(), path, Options{})
	if err != nil {
		t.Logf("Open refused the damaged file: %v", err) // also a clear report
		return
	}
	defer s.Close()
	err = s.IntegrityCheck(t.Context())
	if err == nil {
		t.Fatal("IntegrityCheck passed a database with a zeroed page")
	}
	t.Logf("IntegrityCheck: %v", err)
}

// TestStorageDocQueries runs every ```sql block of docs/storage.md against
// a populated store, so the documented schema and queries stay true.
func TestStorageDocQueries(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "storage.md"))
	if err != nil {
		t.Fatalf("read docs/storage.md: %v", err)
	}
	var queries []string
	rest := string(doc)
	for {
		_, after, ok := strings.Cut(rest, "```sql\n")
		if !ok {
			break
		}
		q, tail, ok := strings.Cut(after, "```")
		if !ok {
			t.Fatal("unterminated ```sql block in docs/storage.md")
		}
		queries = append(queries, q)
		rest = tail
	}
	if len(queries) < 8 {
		t.Fatalf("found %d sql blocks in docs/storage.md, want at least 8", len(queries))
	}
	s := openTest(t, Options{})
	ctx := t.Context()
	now := time.Now()
	var events []store.Event
	for i := 1; i <= 50; i++ {
		events = append(events, store.Event{Seq: uint64(i), Time: now.Add(-time.Duration(50-i) * time.Minute),
			Service: "checkout", Instance: "checkout-7f9c", From: "alive", To: "down", Reason: "r"})
	}
	if err := s.Append(ctx, events); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveInstances(ctx, []store.Instance{{Service: "checkout", Instance: "checkout-7f9c", State: "down",
		Labels: map[string]string{"version": "1.4.2"}, Since: now}}); err != nil {
		t.Fatal(err)
	}
	for _, q := range queries {
		rows, err := s.r.QueryContext(ctx, q)
		if err != nil {
			t.Errorf("docs/storage.md query fails: %v\n%s", err, q)
			continue
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil {
			t.Errorf("docs/storage.md query: %v\n%s", err, q)
		}
		rows.Close()
		if n == 0 && !strings.Contains(q, "2025-06-01") && !strings.Contains(q, "41230") {
			t.Errorf("docs/storage.md query returns nothing on a store with matching data:\n%s", q)
		}
	}
}

// TestCloseCheckpoints: after Close the WAL is folded into pulse.db and
// removed, so a stopped pulse leaves one self-contained file.
func TestCloseCheckpoints(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(t.Context(), []store.Event{ev(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Fatalf("no WAL while open: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, side := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(path + side); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after Close: %v", side, err)
		}
	}
}

// TestOpenTwice: a second monitor on the same database is refused, and the
// lock goes with the first one's Close.
func TestOpenTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(t.Context(), path, Options{})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Open: %v, want ErrLocked naming pid %d", err, os.Getpid())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(t.Context(), path, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s.Close()
}
