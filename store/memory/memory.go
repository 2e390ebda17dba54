package memory

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/fb4b1dcc/pulse/store"
)

// Store is an in-memory store.Store. The zero value is not usable; call New.
// It starts no goroutine.
type Store struct {
	mu        sync.RWMutex
	closed    bool
	events    []store.Event // sorted by Seq
	seqs      map[uint64]struct{}
	lastSeq   uint64
	instances map[store.Key]store.Instance
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		seqs:      make(map[uint64]struct{}),
		instances: make(map[store.Key]store.Instance),
	}
}

// check tests the store, then ctx, in the order every backend does: a
// closed store wins over an ended context.
func (s *Store) check(ctx context.Context) error {
	if s.closed {
		return store.ErrClosed
	}
	return ctx.Err()
}

// Append implements store.Store. It is atomic: validation and duplicate
// checks run before anything is inserted.
func (s *Store) Append(ctx context.Context, events []store.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	seen := make(map[uint64]struct{}, len(events))
	for _, e := range events {
		if err := e.Validate(); err != nil {
			return err
		}
		if _, dup := s.seqs[e.Seq]; dup {
			return fmt.Errorf("%w: seq %d", store.ErrDuplicateSeq, e.Seq)
		}
		if _, dup := seen[e.Seq]; dup {
			return fmt.Errorf("%w: seq %d appears twice in one Append", store.ErrDuplicateSeq, e.Seq)
		}
		seen[e.Seq] = struct{}{}
	}
	for _, e := range events {
		e.Time = normTime(e.Time)
		s.seqs[e.Seq] = struct{}{}
		s.lastSeq = max(s.lastSeq, e.Seq)
		// The monitor appends in Seq order, so this is almost always the end.
		i := len(s.events)
		if i > 0 && s.events[i-1].Seq > e.Seq {
			i, _ = slices.BinarySearchFunc(s.events, e.Seq, func(x store.Event, seq uint64) int { return cmp.Compare(x.Seq, seq) })
		}
		s.events = slices.Insert(s.events, i, e)
	}
	return nil
}

// Events implements store.Store.
func (s *Store) Events(ctx context.Context, q store.Query) ([]store.Event, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	limit := q.EffectiveLimit()
	match := func(e *store.Event) bool {
		return (q.Service == "" || e.Service == q.Service) &&
			(q.Instance == "" || e.Instance == q.Instance) &&
			(q.Since.IsZero() || !e.Time.Before(q.Since)) &&
			(q.Until.IsZero() || e.Time.Before(q.Until))
	}
	// Events after AfterSeq start at first.
	first, _ := slices.BinarySearchFunc(s.events, q.AfterSeq+1, func(x store.Event, seq uint64) int { return cmp.Compare(x.Seq, seq) })
	if q.AfterSeq == ^uint64(0) {
		first = len(s.events)
	}
	out := make([]store.Event, 0, min(limit, len(s.events)-first))
	if q.Desc {
		for i := len(s.events) - 1; i >= first && len(out) < limit; i-- {
			if match(&s.events[i]) {
				out = append(out, s.events[i])
			}
		}
		return out, nil
	}
	for i := first; i < len(s.events) && len(out) < limit; i++ {
		if match(&s.events[i]) {
			out = append(out, s.events[i])
		}
	}
	return out, nil
}

// LastSeq implements store.Store.
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	return s.lastSeq, nil
}

// SaveInstances implements store.Store. Labels are copied: the caller may
// reuse its maps.
func (s *Store) SaveInstances(ctx context.Context, instances []store.Instance) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	for _, in := range instances {
		if err := in.Validate(); err != nil {
			return err
		}
	}
	for _, in := range instances {
		s.instances[store.Key{Service: in.Service, Instance: in.Instance}] = normInstance(in)
	}
	return nil
}

// DeleteInstances implements store.Store.
func (s *Store) DeleteInstances(ctx context.Context, keys []store.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	for _, k := range keys {
		delete(s.instances, k)
	}
	return nil
}

// LoadInstances implements store.Store.
func (s *Store) LoadInstances(ctx context.Context) ([]store.Instance, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := make([]store.Instance, 0, len(s.instances))
	for _, in := range s.instances {
		in.Labels = maps.Clone(in.Labels) // the caller may modify what it gets
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b store.Instance) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Instance, b.Instance))
	})
	return out, nil
}

// Prune implements store.Store.
func (s *Store) Prune(ctx context.Context, before time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	n := len(s.events)
	s.events = slices.DeleteFunc(s.events, func(e store.Event) bool {
		if e.Time.Before(before) {
			delete(s.seqs, e.Seq)
			return true
		}
		return false
	})
	return int64(n - len(s.events)), nil
}

// Close implements store.Store. It drops the data.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.events, s.seqs, s.instances = nil, nil, nil
	return nil
}

// normTime gives a stored time the form the SQLite backend returns: UTC,
// no monotonic reading, zero kept zero.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Round(0).UTC()
}

func normInstance(in store.Instance) store.Instance {
	if len(in.Labels) == 0 {
		in.Labels = nil
	} else {
		in.Labels = maps.Clone(in.Labels)
	}
	in.Since = normTime(in.Since)
	in.LastBeat = normTime(in.LastBeat)
	in.LastProbe = normTime(in.LastProbe)
	in.UpdatedAt = normTime(in.UpdatedAt)
	return in
}
