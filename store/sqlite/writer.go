package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/store"
)

// Request states. The writer claims a pending request inside its open
// transaction; a caller whose context ends first abandons it instead. The
// compare-and-swap between the two makes Append's answer exact: a context
// error means the events were not written.
const (
	pending int32 = iota
	claimed
	abandoned
)

// request is one Append waiting for the writer.
type request struct {
	events []store.Event
	state  atomic.Int32
	err    error      // the writer's outcome, before it is sent
	done   chan error // buffered: the writer never blocks on a caller that left
}

// Append implements store.Store. It hands the events to the writer
// goroutine and returns once the transaction holding them has committed
// (with synchronous=FULL, once the WAL is fsynced).
func (s *Store) Append(ctx context.Context, events []store.Event) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	for _, e := range events {
		if err := e.Validate(); err != nil {
			return err
		}
	}
	r := &request{events: events, done: make(chan error, 1)}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(pending, abandoned) {
			return ctx.Err()
		}
		// Already in a transaction: its outcome is one commit away, and a
		// caller told "failed" must not find its events stored later.
		return <-r.done
	}
}

// writeLoop is the writer goroutine: it gathers requests into batches and
// commits each batch in one transaction. It returns when stop closes, which
// Close does only after every Append has returned.
func (s *Store) writeLoop() {
	defer close(s.done)
	maxEvents := s.opts.MaxBatchEvents
	if s.opts.maxBatch1 {
		maxEvents = 1
	}
	var linger *time.Timer
	if s.opts.BatchDelay > 0 {
		linger = time.NewTimer(time.Hour)
		linger.Stop()
		defer linger.Stop()
	}
	batch := make([]*request, 0, 64)
	for {
		var r *request
		select {
		case r = <-s.reqs:
		case <-s.stop:
			return
		}
		batch = append(batch[:0], r)
		n := len(r.events)
		// Everything that queued while the previous commit was syncing.
	drain:
		for n < maxEvents {
			select {
			case r = <-s.reqs:
				batch = append(batch, r)
				n += len(r.events)
			default:
				break drain
			}
		}
		if linger != nil && n < maxEvents {
			linger.Reset(s.opts.BatchDelay)
		wait:
			for n < maxEvents {
				select {
				case r = <-s.reqs:
					batch = append(batch, r)
					n += len(r.events)
				case <-linger.C:
					break wait
				}
			}
			linger.Stop()
		}
		s.commit(batch)
		clear(batch) // drop references to answered requests
	}
}

// commit writes the batch in one transaction. Each request runs inside its
// own savepoint, so one bad request (a duplicate Seq) fails alone and the
// others still commit. Every request is answered exactly once, also when
// something panics.
func (s *Store) commit(batch []*request) {
	// The writer's statements are not tied to any caller's context: they
	// serve several callers, and Close waits for them. Callers stop waiting
	// through the claim protocol instead.
	ctx := context.Background()
	var (
		tx        *sql.Tx
		answered  bool
		committed bool
	)
	// answer sends each request its own error, or commonErr. A caller that
	// abandoned its request never reads the buffered channel; that is fine.
	answer := func(commonErr error) {
		answered = true
		for _, r := range batch {
			if r.err == nil {
				r.err = commonErr
			}
			r.done <- r.err
		}
	}
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		s.panics.Add(1)
		if answered {
			return
		}
		if committed {
			answer(nil) // the panic came after the commit: the events are stored
			return
		}
		if tx != nil {
			_ = tx.Rollback()
		}
		answer(status.Errorf(status.ClassInternal, "sqlite: writer panic (a bug; please report it): %v", p))
	}()

	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		tx = nil
		// Nothing was written, so callers that abandon meanwhile are right
		// to report their context's error; the others get this one.
		answer(fmt.Errorf("sqlite: begin append in %s: %w", s.path, wrapErr(err)))
		return
	}
	var (
		maxSeq  uint64
		ok      int
		okCount uint64
	)
	for _, r := range batch {
		if !r.state.CompareAndSwap(pending, claimed) {
			continue // its caller gave up before the write began
		}
		if err := s.insertRequest(ctx, tx, r); err != nil {
			var fatal *fatalErr
			if errors.As(err, &fatal) {
				_ = tx.Rollback()
				answer(fmt.Errorf("sqlite: append to %s: %w", s.path, fatal.err))
				return
			}
			r.err = err
			continue
		}
		ok++
		for _, e := range r.events {
			maxSeq = max(maxSeq, e.Seq)
		}
		okCount += uint64(len(r.events))
	}
	if ok == 0 {
		_ = tx.Rollback()
		answer(nil)
		return
	}
	if _, err := tx.ExecContext(ctx, `UPDATE seq_state SET last_seq = ? WHERE id = 1 AND last_seq < ?`, int64(maxSeq), int64(maxSeq)); err != nil {
		_ = tx.Rollback()
		answer(fmt.Errorf("sqlite: append to %s: update seq_state: %w", s.path, wrapErr(err)))
		return
	}
	if err := tx.Commit(); err != nil {
		answer(fmt.Errorf("sqlite: commit append to %s: %w", s.path, wrapErr(err)))
		return
	}
	committed = true
	s.commits.Add(1)
	s.appends.Add(uint64(ok))
	s.events.Add(okCount)
	answer(nil)
}

// fatalErr marks an error after which the transaction cannot go on.
type fatalErr struct{ err error }

func (e *fatalErr) Error() string { return e.err.Error() }

// maxRowsPerInsert is the most events one INSERT statement carries: one
// statement per event costs a round through database/sql and the driver
// each, which dominates large Appends.
const maxRowsPerInsert = 64

// insertSQL returns the INSERT statement for n rows.
func insertSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO events (seq, time_ns, service, instance, zone, from_state, to_state, reason, source, trace_id) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	}
	return b.String()
}

// insertRequest writes one request's events inside a savepoint, undoing
// them all if one fails.
func (s *Store) insertRequest(ctx context.Context, tx *sql.Tx, r *request) error {
	if _, err := tx.ExecContext(ctx, `SAVEPOINT append`); err != nil {
		return &fatalErr{err}
	}
	err := s.insertEvents(ctx, tx, r.events)
	if err == nil {
		if _, err := tx.ExecContext(ctx, `RELEASE append`); err != nil {
			return &fatalErr{err}
		}
		return nil
	}
	if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO append`); rerr != nil {
		return &fatalErr{errors.Join(err, rerr)}
	}
	if _, rerr := tx.ExecContext(ctx, `RELEASE append`); rerr != nil {
		return &fatalErr{errors.Join(err, rerr)}
	}
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT {
		// seq is the only constrained column the insert can violate.
		return fmt.Errorf("%w: seq %d", store.ErrDuplicateSeq, s.duplicateSeq(ctx, tx, r.events))
	}
	return fmt.Errorf("sqlite: append to %s: %w", s.path, wrapErr(err))
}

func (s *Store) insertEvents(ctx context.Context, tx *sql.Tx, events []store.Event) error {
	for len(events) > 0 {
		n := min(len(events), maxRowsPerInsert)
		args := s.args[:0]
		for _, e := range events[:n] {
			args = append(args, int64(e.Seq), e.Time.UnixNano(), e.Service, e.Instance, e.Zone,
				e.From, e.To, e.Reason, e.Source, e.TraceID)
		}
		var err error
		switch n {
		case 1:
			_, err = tx.StmtContext(ctx, s.insertOne).ExecContext(ctx, args...)
		case maxRowsPerInsert:
			_, err = tx.StmtContext(ctx, s.insertMax).ExecContext(ctx, args...)
		default: // the tail of a large Append: prepared for this once
			_, err = tx.ExecContext(ctx, insertSQL(n), args...)
		}
		clear(args) // keep no strings alive between batches
		s.args = args[:0]
		if err != nil {
			return err
		}
		events = events[n:]
	}
	return nil
}

// duplicateSeq names the Seq that made an insert fail, for the error
// message: the first one repeated within the call or already stored.
func (s *Store) duplicateSeq(ctx context.Context, tx *sql.Tx, events []store.Event) uint64 {
	seen := make(map[uint64]bool, len(events))
	for _, e := range events {
		if seen[e.Seq] {
			return e.Seq
		}
		seen[e.Seq] = true
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM events WHERE seq = ?`, int64(e.Seq)).Scan(&one); err == nil {
			return e.Seq
		}
	}
	return events[0].Seq
}
