package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/store"
)

// Opener returns a new, empty store. The suite closes it; Close being
// idempotent, the opener may register its own cleanup too.
type Opener func(t *testing.T) store.Store

// Run runs the conformance suite against stores from open.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Order", testOrder},
		{"FilterCases", testFilterCases},
		{"FilterCombinations", testFilterCombinations},
		{"Limit", testLimit},
		{"Resume", testResume},
		{"LastSeq", testLastSeq},
		{"Invalid", testInvalid},
		{"Duplicate", testDuplicate},
		{"Instances", testInstances},
		{"InstancesInvalid", testInstancesInvalid},
		{"Prune", testPrune},
		{"ContextCanceled", testContextCanceled},
		{"Concurrent", testConcurrent},
		{"CloseDuringAppends", testCloseDuringAppends},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// baseAt returns the suite's reference wall time plus d.
func baseAt(d time.Duration) time.Time {
	return time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC).Add(d)
}

// ev is a plain event at the reference time plus offset.
func ev(seq uint64, service, instance string, offset time.Duration) store.Event {
	return store.Event{
		Seq: seq, Time: baseAt(offset), Service: service, Instance: instance,
		Zone: "z", From: "alive", To: "suspect", Reason: fmt.Sprintf("reason %d", seq), Source: "passive",
	}
}

func seqs(events []store.Event) []uint64 {
	out := make([]uint64, len(events))
	for i, e := range events {
		out[i] = e.Seq
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func mustAppend(t *testing.T, s store.Store, events ...store.Event) {
	t.Helper()
	if err := s.Append(t.Context(), events); err != nil {
		t.Fatalf("Append(%v): %v", seqs(events), err)
	}
}

func mustEvents(t *testing.T, s store.Store, q store.Query) []store.Event {
	t.Helper()
	got, err := s.Events(t.Context(), q)
	if err != nil {
		t.Fatalf("Events(%+v): %v", q, err)
	}
	return got
}

func mustLastSeq(t *testing.T, s store.Store) uint64 {
	t.Helper()
	n, err := s.LastSeq(t.Context())
	if err != nil {
		t.Fatalf("LastSeq: %v", err)
	}
	return n
}

// allEvents pages through every stored event with AfterSeq.
func allEvents(t *testing.T, s store.Store) []store.Event {
	t.Helper()
	var out []store.Event
	var after uint64
	for {
		page := mustEvents(t, s, store.Query{AfterSeq: after, Limit: store.MaxLimit})
		out = append(out, page...)
		if len(page) < store.MaxLimit {
			return out
		}
		after = page[len(page)-1].Seq
	}
}

// sameEvent compares every field; times by instant, and requires UTC
// without a monotonic reading.
func sameEvent(got, want store.Event) error {
	if !got.Time.Equal(want.Time) {
		return fmt.Errorf("seq %d: Time %s, want %s", want.Seq, got.Time, want.Time)
	}
	if err := storedTime("Time", got.Time); err != nil {
		return fmt.Errorf("seq %d: %w", want.Seq, err)
	}
	got.Time, want.Time = time.Time{}, time.Time{}
	if got != want {
		return fmt.Errorf("got  %+v\nwant %+v", got, want)
	}
	return nil
}

// storedTime checks the form a store returns times in.
func storedTime(field string, t time.Time) error {
	if t.IsZero() {
		return nil
	}
	if t.Location() != time.UTC {
		return fmt.Errorf("%s %s is in %s, want UTC", field, t, t.Location())
	}
	if strings.Contains(t.String(), "m=") {
		return fmt.Errorf("%s %s carries a monotonic reading", field, t)
	}
	return nil
}

func testRoundTrip(t *testing.T, s store.Store) {
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	full := store.Event{
		Seq:      7,
		Time:     time.Date(2025, 6, 1, 12, 0, 0, 123456789, zone),
		Service:  "checkout",
		Instance: "checkout-7f9c",
		Zone:     "eu-west-1a",
		From:     "alive",
		To:       "down",
		Reason:   "phi=9.3 > 8; last beat 4.1s ago — ünïcode, 'quotes' and \"doubles\"",
		Source:   "combined",
		TraceID:  "4bf92f3577b34da6a3ce929d0e0e4736",
	}
	// time.Now carries a monotonic reading, which must not come back.
	now := time.Now()
	minimal := store.Event{Seq: 8, Time: now}
	// The ends of the storable range.
	early := store.Event{Seq: 9, Time: time.Unix(0, math.MinInt64), Service: "edge"}
	late := store.Event{Seq: 10, Time: time.Unix(0, math.MaxInt64), Service: "edge"}
	mustAppend(t, s, full, minimal, early, late)

	got := mustEvents(t, s, store.Query{})
	want := []store.Event{full, minimal, early, late}
	if len(got) != len(want) {
		t.Fatalf("got %d events %v, want %d", len(got), seqs(got), len(want))
	}
	for i := range want {
		if err := sameEvent(got[i], want[i]); err != nil {
			t.Error(err)
		}
	}
	if got[0].Time.Nanosecond() != 123456789 {
		t.Errorf("nanoseconds lost: %s", got[0].Time)
	}
}

func testOrder(t *testing.T, s store.Store) {
	// Seqs arrive out of order across calls and times run against seqs:
	// results follow Seq, not arrival or Time.
	mustAppend(t, s, ev(5, "a", "x", 1*time.Second), ev(3, "a", "x", 2*time.Second))
	mustAppend(t, s, ev(1, "a", "x", 3*time.Second))
	mustAppend(t, s, ev(4, "a", "x", 4*time.Second), ev(2, "a", "x", 5*time.Second))
	if got := seqs(mustEvents(t, s, store.Query{})); !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
		t.Errorf("ascending: %v, want [1 2 3 4 5]", got)
	}
	if got := seqs(mustEvents(t, s, store.Query{Desc: true})); !slices.Equal(got, []uint64{5, 4, 3, 2, 1}) {
		t.Errorf("descending: %v, want [5 4 3 2 1]", got)
	}
}

// testFilterCases checks filters on a small fixture with hand-written
// answers, boundaries included (Since inclusive, Until exclusive).
func testFilterCases(t *testing.T, s store.Store) {
	mustAppend(t, s,
		ev(1, "a", "x", 10*time.Second),
		ev(2, "a", "y", 20*time.Second),
		ev(3, "b", "x", 30*time.Second),
		ev(4, "a", "x", 40*time.Second),
		ev(5, "a", "", 50*time.Second), // service-level event
		ev(6, "", "", 60*time.Second),  // fleet-level event
	)
	at := func(sec int) time.Time { return baseAt(time.Duration(sec) * time.Second) }
	cases := []struct {
		name string
		q    store.Query
		want []uint64
	}{
		{"all", store.Query{}, []uint64{1, 2, 3, 4, 5, 6}},
		{"service", store.Query{Service: "a"}, []uint64{1, 2, 4, 5}},
		{"service b", store.Query{Service: "b"}, []uint64{3}},
		{"unknown service", store.Query{Service: "nosuch"}, []uint64{}},
		{"service+instance", store.Query{Service: "a", Instance: "x"}, []uint64{1, 4}},
		{"instance alone", store.Query{Instance: "x"}, []uint64{1, 3, 4}},
		{"since inclusive", store.Query{Since: at(20)}, []uint64{2, 3, 4, 5, 6}},
		{"until exclusive", store.Query{Until: at(40)}, []uint64{1, 2, 3}},
		{"since+until", store.Query{Since: at(20), Until: at(40)}, []uint64{2, 3}},
		{"since between", store.Query{Since: at(25)}, []uint64{3, 4, 5, 6}},
		{"empty window", store.Query{Since: at(40), Until: at(40)}, []uint64{}},
		{"inverted window", store.Query{Since: at(50), Until: at(20)}, []uint64{}},
		{"after seq", store.Query{AfterSeq: 3}, []uint64{4, 5, 6}},
		{"service+after", store.Query{Service: "a", AfterSeq: 2}, []uint64{4, 5}},
		{"everything", store.Query{Service: "a", Instance: "x", Since: at(10), Until: at(41), AfterSeq: 1}, []uint64{4}},
		{"desc+limit", store.Query{Service: "a", Desc: true, Limit: 2}, []uint64{5, 4}},
		{"limit", store.Query{Limit: 2}, []uint64{1, 2}},
		{"since before range", store.Query{Since: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)}, []uint64{1, 2, 3, 4, 5, 6}},
		{"since after range", store.Query{Since: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}, []uint64{}},
		{"until before range", store.Query{Until: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)}, []uint64{}},
		{"until after range", store.Query{Until: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}, []uint64{1, 2, 3, 4, 5, 6}},
		{"since in another zone", store.Query{Since: at(30).In(time.FixedZone("X", -7*3600))}, []uint64{3, 4, 5, 6}},
	}
	for _, c := range cases {
		got := seqs(mustEvents(t, s, c.q))
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %+v: got %v, want %v", c.name, c.q, got, c.want)
		}
	}
}

// fixture is the dataset of testFilterCombinations: two services, two
// instances each plus service- and fleet-level events, with times that do
// not follow Seq.
func fixture() []store.Event {
	var out []store.Event
	services := []string{"a", "b", ""}
	instances := []string{"x", "y", ""}
	for i := 1; i <= 90; i++ {
		svc := services[i%3]
		inst := instances[(i/3)%3]
		if svc == "" {
			inst = ""
		}
		off := time.Duration((i*37)%90) * time.Second
		out = append(out, ev(uint64(i), svc, inst, off))
	}
	return out
}

// oracle is the reference answer to q over events sorted by Seq.
func oracle(events []store.Event, q store.Query) []uint64 {
	var out []uint64
	for _, e := range events {
		if (q.Service == "" || e.Service == q.Service) &&
			(q.Instance == "" || e.Instance == q.Instance) &&
			(q.Since.IsZero() || !e.Time.Before(q.Since)) &&
			(q.Until.IsZero() || e.Time.Before(q.Until)) &&
			e.Seq > q.AfterSeq {
			out = append(out, e.Seq)
		}
	}
	if q.Desc {
		slices.Reverse(out)
	}
	if len(out) > q.EffectiveLimit() {
		out = out[:q.EffectiveLimit()]
	}
	if out == nil {
		out = []uint64{}
	}
	return out
}

func testFilterCombinations(t *testing.T, s store.Store) {
	events := fixture()
	// Append in shuffled calls: storage order must not matter.
	shuffled := slices.Clone(events)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for i := 0; i < len(shuffled); i += 7 {
		mustAppend(t, s, shuffled[i:min(i+7, len(shuffled))]...)
	}
	n := 0
	for _, svc := range []string{"", "a", "b", "nosuch"} {
		for _, inst := range []string{"", "x", "y", "nosuch"} {
			for _, since := range []time.Time{{}, baseAt(20 * time.Second)} {
				for _, until := range []time.Time{{}, baseAt(70 * time.Second)} {
					for _, after := range []uint64{0, 30} {
						for _, desc := range []bool{false, true} {
							for _, limit := range []int{0, 4} {
								q := store.Query{Service: svc, Instance: inst, Since: since, Until: until, AfterSeq: after, Desc: desc, Limit: limit}
								got := seqs(mustEvents(t, s, q))
								if want := oracle(events, q); !slices.Equal(got, want) {
									t.Errorf("%+v: got %v, want %v", q, got, want)
								}
								n++
							}
						}
					}
				}
			}
		}
	}
	if n != 512 {
		t.Fatalf("ran %d combinations, want 512", n)
	}
}

func testLimit(t *testing.T, s store.Store) {
	const total = store.MaxLimit + 1
	events := make([]store.Event, total)
	for i := range events {
		events[i] = store.Event{Seq: uint64(i + 1), Time: baseAt(time.Duration(i))}
	}
	mustAppend(t, s, events...)
	cases := []struct {
		limit      int
		desc       bool
		n          int
		first, end uint64
	}{
		{0, false, store.DefaultLimit, 1, store.DefaultLimit},
		{-5, false, store.DefaultLimit, 1, store.DefaultLimit},
		{3, false, 3, 1, 3},
		{store.MaxLimit + 1, false, store.MaxLimit, 1, store.MaxLimit},
		{math.MaxInt, true, store.MaxLimit, total, total - store.MaxLimit + 1},
		{0, true, store.DefaultLimit, total, total - store.DefaultLimit + 1},
		{3, true, 3, total, total - 2},
	}
	for _, c := range cases {
		got := mustEvents(t, s, store.Query{Limit: c.limit, Desc: c.desc})
		if len(got) != c.n || got[0].Seq != c.first || got[len(got)-1].Seq != c.end {
			t.Errorf("Limit %d Desc %v: %d events %d..%d, want %d events %d..%d",
				c.limit, c.desc, len(got), got[0].Seq, got[len(got)-1].Seq, c.n, c.first, c.end)
		}
	}
}

func testResume(t *testing.T, s store.Store) {
	for i := uint64(1); i <= 50; i++ {
		mustAppend(t, s, ev(i, "a", "x", time.Duration(i)*time.Second))
	}
	// A watcher resuming from its last seen Seq, a page at a time, sees
	// every event exactly once and in order.
	var got []uint64
	var after uint64
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatalf("paging does not end: %v", got)
		}
		page := mustEvents(t, s, store.Query{AfterSeq: after, Limit: 7})
		if len(page) == 0 {
			break
		}
		got = append(got, seqs(page)...)
		after = page[len(page)-1].Seq
	}
	if want := seqRange(1, 50); !slices.Equal(got, want) {
		t.Errorf("resumed pages: %v, want 1..50", got)
	}
	if got := seqs(mustEvents(t, s, store.Query{AfterSeq: 40, Desc: true, Limit: 3})); !slices.Equal(got, []uint64{50, 49, 48}) {
		t.Errorf("AfterSeq 40 Desc Limit 3: %v, want [50 49 48]", got)
	}
	for _, after := range []uint64{50, 51, math.MaxInt64, math.MaxUint64} {
		if got := mustEvents(t, s, store.Query{AfterSeq: after}); len(got) != 0 {
			t.Errorf("AfterSeq %d: %v, want none", after, seqs(got))
		}
	}
}

func testLastSeq(t *testing.T, s store.Store) {
	if n := mustLastSeq(t, s); n != 0 {
		t.Fatalf("empty store: LastSeq %d, want 0", n)
	}
	mustAppend(t, s, ev(3, "a", "x", 0), ev(1, "a", "x", 0), ev(7, "a", "x", 0))
	if n := mustLastSeq(t, s); n != 7 {
		t.Fatalf("LastSeq %d, want 7", n)
	}
	mustAppend(t, s, ev(5, "a", "x", 0))
	if n := mustLastSeq(t, s); n != 7 {
		t.Errorf("after appending 5: LastSeq %d, want 7", n)
	}
	// A rejected call does not move it.
	if err := s.Append(t.Context(), []store.Event{ev(100, "a", "x", 0), ev(7, "a", "x", 0)}); !errors.Is(err, store.ErrDuplicateSeq) {
		t.Fatalf("Append with a stored seq: %v, want ErrDuplicateSeq", err)
	}
	if n := mustLastSeq(t, s); n != 7 {
		t.Errorf("after a rejected Append of 100: LastSeq %d, want 7", n)
	}
	// Nor does expiry: a Seq is never handed out twice.
	if _, err := s.Prune(t.Context(), baseAt(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := mustEvents(t, s, store.Query{}); len(got) != 0 {
		t.Fatalf("after pruning everything: %v left", seqs(got))
	}
	if n := mustLastSeq(t, s); n != 7 {
		t.Errorf("after pruning everything: LastSeq %d, want 7", n)
	}
	mustAppend(t, s, ev(math.MaxInt64, "a", "x", 0))
	if n := mustLastSeq(t, s); n != math.MaxInt64 {
		t.Errorf("LastSeq %d, want MaxInt64", n)
	}
}

func testInvalid(t *testing.T, s store.Store) {
	mustAppend(t, s, ev(1, "a", "x", 0))
	good := ev(2, "a", "x", 0)
	noTime := ev(3, "a", "x", 0)
	noTime.Time = time.Time{}
	tooLate := ev(4, "a", "x", 0)
	tooLate.Time = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	tooEarly := ev(5, "a", "x", 0)
	tooEarly.Time = time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, bad := range []store.Event{ev(0, "a", "x", 0), ev(math.MaxInt64+1, "a", "x", 0), noTime, tooLate, tooEarly} {
		err := s.Append(t.Context(), []store.Event{good, bad})
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Append of seq %d time %s: %v, want ErrInvalid", bad.Seq, bad.Time, err)
		}
	}
	if got := seqs(mustEvents(t, s, store.Query{})); !slices.Equal(got, []uint64{1}) {
		t.Errorf("after rejected calls: %v stored, want [1] (a call is all or nothing)", got)
	}
	if n := mustLastSeq(t, s); n != 1 {
		t.Errorf("LastSeq %d, want 1", n)
	}
	if err := s.Append(t.Context(), nil); err != nil {
		t.Errorf("Append(nil): %v", err)
	}
}

func testDuplicate(t *testing.T, s store.Store) {
	mustAppend(t, s, ev(1, "a", "x", 0))
	if err := s.Append(t.Context(), []store.Event{ev(2, "a", "x", 0), ev(1, "b", "y", 0)}); !errors.Is(err, store.ErrDuplicateSeq) {
		t.Errorf("Append of a stored seq: %v, want ErrDuplicateSeq", err)
	}
	if err := s.Append(t.Context(), []store.Event{ev(3, "a", "x", 0), ev(3, "a", "x", 0)}); !errors.Is(err, store.ErrDuplicateSeq) {
		t.Errorf("Append repeating a seq: %v, want ErrDuplicateSeq", err)
	}
	got := mustEvents(t, s, store.Query{})
	if !slices.Equal(seqs(got), []uint64{1}) || got[0].Service != "a" {
		t.Fatalf("after rejected calls: %+v, want only the first seq 1", got)
	}
	// The rejected events can be sent again once fixed.
	mustAppend(t, s, ev(2, "a", "x", 0), ev(3, "a", "x", 0))
	if got := seqs(mustEvents(t, s, store.Query{})); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("after retry: %v, want [1 2 3]", got)
	}
}

func sameInstance(got, want store.Instance) error {
	for _, f := range []struct {
		name      string
		got, want time.Time
	}{{"Since", got.Since, want.Since}, {"LastBeat", got.LastBeat, want.LastBeat}, {"LastProbe", got.LastProbe, want.LastProbe}, {"UpdatedAt", got.UpdatedAt, want.UpdatedAt}} {
		if f.got.IsZero() != f.want.IsZero() || !f.got.Equal(f.want) {
			return fmt.Errorf("%s/%s %s: got %s, want %s", want.Service, want.Instance, f.name, f.got, f.want)
		}
		if err := storedTime(f.name, f.got); err != nil {
			return fmt.Errorf("%s/%s: %w", want.Service, want.Instance, err)
		}
	}
	if len(want.Labels) == 0 {
		if got.Labels != nil {
			return fmt.Errorf("%s/%s Labels: got %#v, want nil", want.Service, want.Instance, got.Labels)
		}
	} else if !maps.Equal(got.Labels, want.Labels) {
		return fmt.Errorf("%s/%s Labels: got %v, want %v", want.Service, want.Instance, got.Labels, want.Labels)
	}
	got.Since, got.LastBeat, got.LastProbe, got.UpdatedAt, got.Labels = time.Time{}, time.Time{}, time.Time{}, time.Time{}, nil
	want.Since, want.LastBeat, want.LastProbe, want.UpdatedAt, want.Labels = time.Time{}, time.Time{}, time.Time{}, time.Time{}, nil
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		return fmt.Errorf("got  %+v\nwant %+v", got, want)
	}
	return nil
}

func loadInstances(t *testing.T, s store.Store) []store.Instance {
	t.Helper()
	got, err := s.LoadInstances(t.Context())
	if err != nil {
		t.Fatalf("LoadInstances: %v", err)
	}
	return got
}

func checkInstances(t *testing.T, got, want []store.Instance) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("loaded %d instances %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if err := sameInstance(got[i], want[i]); err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
	}
}

func testInstances(t *testing.T, s store.Store) {
	if got := loadInstances(t, s); len(got) != 0 {
		t.Fatalf("empty store: %v", got)
	}
	zone := time.FixedZone("UTC-3", -3*3600)
	full := store.Instance{
		Service: "web", Instance: "web-2", Zone: "b",
		Labels:       map[string]string{"version": "1.4.2", "pod": "web-2-abc", "quote": `"x"`, "empty": ""},
		State:        "suspect",
		Since:        time.Date(2025, 5, 1, 10, 0, 0, 1, zone),
		Reason:       "phi=9.3 > 8; last beat 4.1s ago",
		LastBeat:     time.Now(), // with a monotonic reading, which must not come back
		LastProbe:    time.Date(2025, 5, 1, 10, 0, 3, 999999999, time.UTC),
		MeanInterval: 10*time.Second + 3*time.Millisecond,
		DevInterval:  250 * time.Microsecond,
		RTT:          1234567 * time.Nanosecond,
		UpdatedAt:    time.Date(2025, 5, 1, 10, 0, 4, 0, time.Local),
	}
	// Never beaten, never probed: zero times stay zero, and no labels.
	bare := store.Instance{Service: "api", Instance: "api-1", State: "unknown"}
	emptyLabels := store.Instance{Service: "web", Instance: "web-1", Labels: map[string]string{}, State: "alive"}
	labels := full.Labels
	if err := s.SaveInstances(t.Context(), []store.Instance{full, bare, emptyLabels}); err != nil {
		t.Fatalf("SaveInstances: %v", err)
	}
	// The store keeps its own copy of the labels.
	wantLabels := maps.Clone(labels)
	labels["version"] = "changed by the caller"
	full.Labels = wantLabels
	sorted := []store.Instance{bare, emptyLabels, full} // by service, then instance
	got := loadInstances(t, s)
	checkInstances(t, got, sorted)
	for _, in := range got {
		if !in.Since.IsZero() && in.Service == "api" {
			t.Errorf("zero Since came back as %s", in.Since)
		}
	}
	// Changing what Load returned changes nothing stored.
	if got[2].Labels != nil {
		got[2].Labels["pod"] = "mutated"
	}
	checkInstances(t, loadInstances(t, s), sorted)

	// Replace: a second save overwrites the whole snapshot (labels are
	// replaced, not merged) without adding a row.
	replaced := full
	replaced.Labels = map[string]string{"version": "1.5.0"}
	replaced.State = "down"
	replaced.Reason = "no beat for 40s"
	replaced.LastBeat = time.Time{}
	replaced.RTT = 0
	if err := s.SaveInstances(t.Context(), []store.Instance{replaced}); err != nil {
		t.Fatal(err)
	}
	sorted = []store.Instance{bare, emptyLabels, replaced}
	checkInstances(t, loadInstances(t, s), sorted)

	// Delete, including a key that was never saved.
	if err := s.DeleteInstances(t.Context(), []store.Key{{Service: "web", Instance: "web-2"}, {Service: "nosuch", Instance: "x"}}); err != nil {
		t.Fatalf("DeleteInstances: %v", err)
	}
	checkInstances(t, loadInstances(t, s), []store.Instance{bare, emptyLabels})
	if err := s.DeleteInstances(t.Context(), nil); err != nil {
		t.Errorf("DeleteInstances(nil): %v", err)
	}
	if err := s.SaveInstances(t.Context(), nil); err != nil {
		t.Errorf("SaveInstances(nil): %v", err)
	}
	// Instances and events are independent.
	if _, err := s.Prune(t.Context(), baseAt(1000*time.Hour)); err != nil {
		t.Fatal(err)
	}
	checkInstances(t, loadInstances(t, s), []store.Instance{bare, emptyLabels})
}

func testInstancesInvalid(t *testing.T, s store.Store) {
	good := store.Instance{Service: "a", Instance: "1", State: "alive"}
	for _, bad := range []store.Instance{
		{Service: "a"},
		{Instance: "1"},
		{Service: "a", Instance: "2", Since: time.Date(2400, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if err := s.SaveInstances(t.Context(), []store.Instance{good, bad}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("SaveInstances(%+v): %v, want ErrInvalid", bad, err)
		}
	}
	if got := loadInstances(t, s); len(got) != 0 {
		t.Errorf("after rejected calls: %+v saved, want none (a call is all or nothing)", got)
	}
}

func testPrune(t *testing.T, s store.Store) {
	for i := uint64(0); i < 10; i++ {
		mustAppend(t, s, ev(i+1, "a", "x", time.Duration(i)*time.Second))
	}
	n, err := s.Prune(t.Context(), baseAt(5*time.Second))
	if err != nil || n != 5 {
		t.Fatalf("Prune: %d, %v; want 5 events (times before the cut)", n, err)
	}
	if got := seqs(mustEvents(t, s, store.Query{})); !slices.Equal(got, seqRange(6, 10)) {
		t.Errorf("after Prune: %v, want 6..10 (the event exactly at the cut stays)", got)
	}
	if n, err := s.Prune(t.Context(), baseAt(5*time.Second)); err != nil || n != 0 {
		t.Errorf("second Prune: %d, %v; want 0", n, err)
	}
	if n, err := s.Prune(t.Context(), time.Time{}); err != nil || n != 0 {
		t.Errorf("Prune(zero time): %d, %v; want 0", n, err)
	}
	if n, err := s.Prune(t.Context(), baseAt(9*time.Second+1)); err != nil || n != 5 {
		t.Errorf("Prune of the rest: %d, %v; want 5", n, err)
	}
	if got := mustEvents(t, s, store.Query{}); len(got) != 0 {
		t.Errorf("after pruning all: %v", seqs(got))
	}
}

func testContextCanceled(t *testing.T, s store.Store) {
	mustAppend(t, s, ev(1, "a", "x", 0))
	if err := s.SaveInstances(t.Context(), []store.Instance{{Service: "a", Instance: "x"}}); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel2 := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, c := range []struct {
		ctx  context.Context
		want error
	}{{canceled, context.Canceled}, {expired, context.DeadlineExceeded}} {
		ctx := c.ctx
		if err := s.Append(ctx, []store.Event{ev(2, "a", "x", 0)}); !errors.Is(err, c.want) {
			t.Errorf("Append: %v, want %v", err, c.want)
		}
		if _, err := s.Events(ctx, store.Query{}); !errors.Is(err, c.want) {
			t.Errorf("Events: %v, want %v", err, c.want)
		}
		if _, err := s.LastSeq(ctx); !errors.Is(err, c.want) {
			t.Errorf("LastSeq: %v, want %v", err, c.want)
		}
		if err := s.SaveInstances(ctx, []store.Instance{{Service: "b", Instance: "y"}}); !errors.Is(err, c.want) {
			t.Errorf("SaveInstances: %v, want %v", err, c.want)
		}
		if err := s.DeleteInstances(ctx, []store.Key{{Service: "a", Instance: "x"}}); !errors.Is(err, c.want) {
			t.Errorf("DeleteInstances: %v, want %v", err, c.want)
		}
		if _, err := s.LoadInstances(ctx); !errors.Is(err, c.want) {
			t.Errorf("LoadInstances: %v, want %v", err, c.want)
		}
		if _, err := s.Prune(ctx, baseAt(time.Hour)); !errors.Is(err, c.want) {
			t.Errorf("Prune: %v, want %v", err, c.want)
		}
	}
	// Nothing happened.
	if got := seqs(mustEvents(t, s, store.Query{})); !slices.Equal(got, []uint64{1}) {
		t.Errorf("events after canceled calls: %v, want [1]", got)
	}
	if n := mustLastSeq(t, s); n != 1 {
		t.Errorf("LastSeq after canceled calls: %d, want 1", n)
	}
	got := loadInstances(t, s)
	if len(got) != 1 || got[0].Service != "a" {
		t.Errorf("instances after canceled calls: %+v, want only a/x", got)
	}
}

func testConcurrent(t *testing.T, s store.Store) {
	const (
		writers = 16
		calls   = 25
	)
	var (
		next    atomic.Uint64
		wg      sync.WaitGroup
		readers sync.WaitGroup
		stop    = make(chan struct{})
		errs    = make(chan error, writers+4)
	)
	// Readers run alongside, for the race detector and to see that reads
	// never observe a Seq twice or out of order.
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := s.Events(t.Context(), store.Query{Desc: true, Limit: 50})
				if err != nil {
					errs <- err
					return
				}
				for i := 1; i < len(got); i++ {
					if got[i].Seq >= got[i-1].Seq {
						errs <- fmt.Errorf("read %v: not strictly decreasing", seqs(got))
						return
					}
				}
				if _, err := s.LastSeq(t.Context()); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for w := range writers {
		wg.Go(func() {
			for c := range calls {
				k := uint64(1 + (w+c)%3)
				hi := next.Add(k)
				batch := make([]store.Event, 0, k)
				for seq := hi - k + 1; seq <= hi; seq++ {
					batch = append(batch, ev(seq, fmt.Sprintf("svc-%d", w%4), fmt.Sprintf("i-%d", w), time.Duration(seq)*time.Millisecond))
				}
				if err := s.Append(t.Context(), batch); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := next.Load()
	got := allEvents(t, s)
	if want := seqRange(1, total); !slices.Equal(seqs(got), want) {
		t.Fatalf("stored %d events, want exactly once each of 1..%d", len(got), total)
	}
	for _, e := range got {
		if e.Reason != fmt.Sprintf("reason %d", e.Seq) {
			t.Fatalf("seq %d has reason %q", e.Seq, e.Reason)
		}
	}
	if n := mustLastSeq(t, s); n != total {
		t.Errorf("LastSeq %d, want %d", n, total)
	}
}

// testCloseDuringAppends closes the store under concurrent Appends: each
// returns nil or ErrClosed, nothing else, and Close returns once they have.
func testCloseDuringAppends(t *testing.T, s store.Store) {
	var (
		next  atomic.Uint64
		acked atomic.Int64
		wg    sync.WaitGroup
		errs  = make(chan error, 8)
		some  = make(chan struct{})
		once  sync.Once
	)
	for range 8 {
		wg.Go(func() {
			for {
				seq := next.Add(1)
				err := s.Append(t.Context(), []store.Event{ev(seq, "a", "x", 0)})
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
				if acked.Add(1) == 50 {
					once.Do(func() { close(some) })
				}
			}
		})
	}
	guard := time.NewTimer(30 * time.Second)
	defer guard.Stop()
	select {
	case <-some:
	case <-guard.C:
		t.Error("no 50 Appends acknowledged within 30s; closing anyway")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Append during Close: %v, want nil or ErrClosed", err)
	}
	if acked.Load() < 50 {
		t.Errorf("only %d Appends acknowledged", acked.Load())
	}
}

func testClose(t *testing.T, s store.Store) {
	mustAppend(t, s, ev(1, "a", "x", 0))
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = s.Close() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Close %d: %v", i, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
	ctx := t.Context()
	check := func(name string, err error) {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	check("Append", s.Append(ctx, []store.Event{ev(2, "a", "x", 0)}))
	check("Append(nil)", s.Append(ctx, nil))
	_, err := s.Events(ctx, store.Query{})
	check("Events", err)
	_, err = s.LastSeq(ctx)
	check("LastSeq", err)
	check("SaveInstances", s.SaveInstances(ctx, []store.Instance{{Service: "a", Instance: "x"}}))
	check("DeleteInstances", s.DeleteInstances(ctx, []store.Key{{Service: "a", Instance: "x"}}))
	_, err = s.LoadInstances(ctx)
	check("LoadInstances", err)
	_, err = s.Prune(ctx, baseAt(0))
	check("Prune", err)
}
