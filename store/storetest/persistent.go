package storetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/store"
)

// Persistent describes a backend whose data outlives the process.
type Persistent struct {
	// Open opens the store kept in dir, creating it when dir is empty. The
	// caller closes it.
	Open func(dir string) (store.Store, error)
	// Check verifies the on-disk state in dir is intact (for SQLite,
	// PRAGMA integrity_check). It runs after every kill, before Open.
	Check func(dir string) error
}

// crashEnv carries the data directory to the child process of the kill test.
const crashEnv = "PULSE_STORETEST_CRASH_DIR"

// CrashChild runs the writing side of the kill -9 test when this process
// is that test's child, and then returns its exit code and true; otherwise
// it returns 0, false at once. Call it first in the backend's TestMain:
//
//	func TestMain(m *testing.M) {
//		if code, ok := storetest.CrashChild(persistent()); ok {
//			os.Exit(code)
//		}
//		goleak.VerifyTestMain(m)
//	}
func CrashChild(p Persistent) (code int, isChild bool) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		return 0, false
	}
	return crashChild(p, dir, os.Stdout), true
}

// crashEvent is the event with the given seq the kill test writes; the
// parent recomputes it to check what it reads back.
func crashEvent(seq uint64) store.Event {
	return store.Event{
		Seq:      seq,
		Time:     baseAt(time.Duration(seq) * time.Millisecond),
		Service:  "svc-" + strconv.FormatUint(seq%3, 10),
		Instance: "inst-" + strconv.FormatUint(seq%17, 10),
		Zone:     "zone-" + strconv.FormatUint(seq%2, 10),
		From:     "alive",
		To:       "suspect",
		Reason:   "crash test event " + strconv.FormatUint(seq, 10) + " " + strings.Repeat("x", int(seq%50)),
		Source:   "passive",
		TraceID:  fmt.Sprintf("%032x", seq),
	}
}

// crashChild appends from several goroutines as fast as the store takes
// it and writes each acknowledged Seq to out, one line per Seq, one write
// per Append, only after Append returned nil. It runs until killed.
func crashChild(p Persistent, dir string, out io.Writer) int {
	s, err := p.Open(dir)
	if err != nil {
		fmt.Fprintf(out, "error open: %v\n", err)
		return 2
	}
	ctx := context.Background()
	last, err := s.LastSeq(ctx)
	if err != nil {
		fmt.Fprintf(out, "error lastseq: %v\n", err)
		return 2
	}
	fmt.Fprintf(out, "opened %d\n", last)
	var (
		next   atomic.Uint64
		outMu  sync.Mutex
		wg     sync.WaitGroup
		failed atomic.Bool
	)
	next.Store(last)
	// A parent that dies without killing us must not leave us running.
	deadline := time.Now().Add(60 * time.Second)
	for w := range 8 {
		wg.Go(func() {
			var line []byte
			for i := 0; time.Now().Before(deadline) && !failed.Load(); i++ {
				k := uint64(1 + (w+i)%3)
				hi := next.Add(k)
				batch := make([]store.Event, 0, k)
				for seq := hi - k + 1; seq <= hi; seq++ {
					batch = append(batch, crashEvent(seq))
				}
				if err := s.Append(ctx, batch); err != nil {
					failed.Store(true)
					outMu.Lock()
					fmt.Fprintf(out, "error append: %v\n", err)
					outMu.Unlock()
					return
				}
				line = line[:0]
				for _, e := range batch {
					line = strconv.AppendUint(line, e.Seq, 10)
					line = append(line, '\n')
				}
				outMu.Lock()
				_, err := out.Write(line)
				outMu.Unlock()
				if err != nil {
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	_ = s.Close()
	fmt.Fprintln(out, "error: not killed within 60s")
	return 3
}

// RunPersistent runs the tests of data outliving the store: reopen, flush
// on Close, and kill -9 during heavy writes.
func RunPersistent(t *testing.T, p Persistent) {
	t.Run("Reopen", func(t *testing.T) { testReopen(t, p) })
	t.Run("CloseFlushes", func(t *testing.T) { testCloseFlushes(t, p) })
	t.Run("KillDuringAppends", func(t *testing.T) { testKill(t, p) })
}

func mustOpen(t *testing.T, p Persistent, dir string) store.Store {
	t.Helper()
	s, err := p.Open(dir)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustClose(t *testing.T, s store.Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func testReopen(t *testing.T, p Persistent) {
	dir := t.TempDir()
	s := mustOpen(t, p, dir)
	var want []store.Event
	for i := uint64(1); i <= 100; i++ {
		want = append(want, crashEvent(i))
	}
	mustAppend(t, s, want[:60]...)
	mustAppend(t, s, want[60:]...)
	inst := []store.Instance{{
		Service: "a", Instance: "1", Zone: "z", Labels: map[string]string{"k": "v"}, State: "alive",
		Since: baseAt(time.Second), LastBeat: baseAt(2 * time.Second), MeanInterval: time.Second, RTT: time.Millisecond,
	}, {Service: "b", Instance: "2", State: "unknown"}}
	if err := s.SaveInstances(t.Context(), inst); err != nil {
		t.Fatal(err)
	}
	mustClose(t, s)

	s = mustOpen(t, p, dir)
	got := allEvents(t, s)
	if len(got) != len(want) {
		t.Fatalf("after reopen: %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if err := sameEvent(got[i], want[i]); err != nil {
			t.Fatal(err)
		}
	}
	if n := mustLastSeq(t, s); n != 100 {
		t.Errorf("LastSeq after reopen: %d, want 100", n)
	}
	checkInstances(t, loadInstances(t, s), inst)
	if n, err := s.Prune(t.Context(), baseAt(time.Hour)); err != nil || n != 100 {
		t.Fatalf("Prune: %d, %v", n, err)
	}
	mustClose(t, s)

	// The sequence's high-water mark is stored, not derived from events.
	s = mustOpen(t, p, dir)
	if n := mustLastSeq(t, s); n != 100 {
		t.Errorf("LastSeq after pruning everything and reopening: %d, want 100", n)
	}
	mustClose(t, s)
}

// testCloseFlushes closes under concurrent Appends and checks after a
// reopen that every acknowledged event is there.
func testCloseFlushes(t *testing.T, p Persistent) {
	dir := t.TempDir()
	s := mustOpen(t, p, dir)
	var (
		next  atomic.Uint64
		mu    sync.Mutex
		acked []uint64
		wg    sync.WaitGroup
		errs  = make(chan error, 8)
		some  = make(chan struct{})
		once  sync.Once
	)
	for range 8 {
		wg.Go(func() {
			for {
				seq := next.Add(1)
				err := s.Append(t.Context(), []store.Event{crashEvent(seq)})
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				acked = append(acked, seq)
				if len(acked) == 200 {
					once.Do(func() { close(some) })
				}
				mu.Unlock()
			}
		})
	}
	guard := time.NewTimer(30 * time.Second)
	defer guard.Stop()
	select {
	case <-some:
	case <-guard.C:
		t.Error("no 200 Appends acknowledged within 30s; closing anyway")
	}
	mustClose(t, s)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Append during Close: %v, want nil or ErrClosed", err)
	}
	s = mustOpen(t, p, dir)
	present := map[uint64]bool{}
	for _, e := range allEvents(t, s) {
		present[e.Seq] = true
	}
	for _, seq := range acked {
		if !present[seq] {
			t.Errorf("acknowledged seq %d missing after Close and reopen", seq)
		}
	}
	t.Logf("%d Appends acknowledged before Close; all present after reopen", len(acked))
}

// testKill kills a writing child process with SIGKILL at three moments,
// and after each kill checks that the store opens cleanly and holds every
// event the child saw acknowledged.
func testKill(t *testing.T, p Persistent) {
	if p.Check == nil {
		t.Fatal("Persistent.Check is nil: the kill test needs an integrity check")
	}
	dir := t.TempDir()
	acked := map[uint64]bool{}
	var maxAcked uint64
	// Kill after this many acknowledged events: in the first batches, in
	// full flow, and deeper in, when the WAL has grown and been checkpointed.
	for round, killAfter := range []int{1, 400, 3000} {
		lines, stderr := runChildUntil(t, dir, killAfter)
		var opened bool
		n := 0
		for _, l := range lines {
			if after, ok := strings.CutPrefix(l, "opened "); ok {
				last, err := strconv.ParseUint(after, 10, 64)
				if err != nil {
					t.Fatalf("round %d: child line %q", round, l)
				}
				if last < maxAcked {
					t.Fatalf("round %d: reopened store has LastSeq %d, below the acknowledged %d", round, last, maxAcked)
				}
				opened = true
				continue
			}
			seq, err := strconv.ParseUint(l, 10, 64)
			if err != nil {
				t.Fatalf("round %d: child wrote %q (does TestMain call storetest.CrashChild first?); stderr:\n%s", round, l, stderr)
			}
			acked[seq] = true
			maxAcked = max(maxAcked, seq)
			n++
		}
		if !opened || n < killAfter {
			t.Fatalf("round %d: child acknowledged %d events (opened=%v) before the kill, want >= %d; stderr:\n%s", round, n, opened, killAfter, stderr)
		}

		if err := p.Check(dir); err != nil {
			t.Fatalf("round %d: after kill -9: %v", round, err)
		}
		s := mustOpen(t, p, dir)
		stored := allEvents(t, s)
		present := make(map[uint64]bool, len(stored))
		for _, e := range stored {
			if err := sameEvent(e, crashEvent(e.Seq)); err != nil {
				t.Fatalf("round %d: stored event differs from the one written: %v", round, err)
			}
			present[e.Seq] = true
		}
		var missing []uint64
		for seq := range acked {
			if !present[seq] {
				missing = append(missing, seq)
			}
		}
		slices.Sort(missing)
		if len(missing) > 0 {
			t.Fatalf("round %d: %d acknowledged events missing after kill -9, first %v", round, len(missing), missing[:min(len(missing), 10)])
		}
		if last := mustLastSeq(t, s); last < maxAcked {
			t.Errorf("round %d: LastSeq %d below the highest acknowledged %d", round, last, maxAcked)
		}
		mustClose(t, s)
		t.Logf("round %d: killed after %d acks this round; %d acknowledged in total, %d stored (unacknowledged extras are allowed)",
			round, n, len(acked), len(stored))
	}
}

// runChildUntil starts the child writer on dir, SIGKILLs it once it has
// acknowledged killAfter events, and returns every complete line it wrote
// before dying, with its stderr.
func runChildUntil(t *testing.T, dir string, killAfter int) (lines []string, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1024)
	go func() {
		defer close(got)
		r := bufio.NewReader(stdout)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return // a line cut by the kill is not an acknowledgement
			}
			got <- strings.TrimSuffix(l, "\n")
		}
	}()
	// However this ends: the child is dead, its output read to the end
	// (lines written before the kill are still in the pipe), and reaped.
	var waitErr error
	finish := func() {
		_ = cmd.Process.Kill() // SIGKILL on Unix; an error means it already exited
		for l := range got {
			lines = append(lines, l)
		}
		waitErr = cmd.Wait()
	}
	done := false
	defer func() {
		if !done {
			finish()
		}
	}()
	guard := time.NewTimer(20 * time.Second)
	defer guard.Stop()
	acks := 0
	for acks < killAfter {
		select {
		case l, ok := <-got:
			if !ok {
				done = true
				finish()
				t.Fatalf("child exited (%v) after %d acks; output %q; stderr:\n%s", waitErr, acks, lines, errBuf.String())
			}
			lines = append(lines, l)
			if strings.HasPrefix(l, "error") {
				t.Fatalf("child: %s; stderr:\n%s", l, errBuf.String())
			}
			if !strings.HasPrefix(l, "opened ") {
				acks++
			}
		case <-guard.C:
			t.Fatalf("child acknowledged only %d of %d events within 20s; stderr:\n%s", acks, killAfter, errBuf.String())
		}
	}
	done = true
	finish()
	if cmd.ProcessState == nil || cmd.ProcessState.Exited() {
		t.Fatalf("child was not killed by the signal but exited: %v; stderr:\n%s", waitErr, errBuf.String())
	}
	return lines, errBuf.String()
}
