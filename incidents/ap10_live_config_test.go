package incidents

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/telemetry"
	"github.com/fb4b1dcc/pulse/wire"
)

// AP-10 (INC-2021-277, INC-2023-166): the heartbeat interval was a
// constant in the code. Senders scaled out together beat together (a
// heartbeat storm), and changing the interval needed a rebuild and a
// restart of every sender.
//
// Pass criterion (INCIDENTS.md): 10,000 senders start at once: the
// per-100 ms arrival count has max/mean ≤ 1.5 after the first interval; a
// change from 30 s to 10 s reaches every sender within one old interval.
// Also: `interval: 30` (no unit) is rejected with a message that says so.
//
// The storm and the 30 s → 10 s change are about scheduling, so they run
// in synctest bubbles (10,000 real heartbeat.Senders, a real
// monitor.Monitor's directives in the ACKs, the in-memory network of
// helpers_b_test.go). TestAP10ReloadOverUDP replays the change in real
// time through the daemon's file watch and real UDP, at a 1.5 s → 500 ms
// change (the same 3:1 ratio) with 100 senders.

const apb10Senders = 10000

func apb10Config(interval string) string {
	return `
services:
  - name: fleet
    passive:
      interval: ` + interval + `
      keys: [{id: 1, secret: {value: %KEY%}}]
`
}

// apb10Arrivals records when each instance's beats arrived (first copies
// and retransmissions alike: every datagram counts toward a storm).
type apb10Arrivals struct {
	mu  sync.Mutex
	all []time.Time
	by  map[string][]time.Time
}

func (a *apb10Arrivals) seen(in *apbMemInst, _ *wire.Beat, at time.Time, _ bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.all = append(a.all, at)
	if a.by != nil {
		a.by[in.Instance] = append(a.by[in.Instance], at)
	}
}

// TestAP10StartupSpread: 10,000 senders start in the same instant against
// a monitor whose configuration says 1 s (the LAN preset). Pass: in the
// two intervals after the first, the per-100 ms arrival count has
// max/mean ≤ 1.5; every beat of every sender was sent and ACKed (≥ 2 each),
// and the window holds 2 beats per sender ± 2 % (jitter moves a few of the
// window's edge beats in or out).
func TestAP10StartupSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		arr := &apb10Arrivals{}
		_, key, mem := apb10Setup(t, "1s", arr)
		senders := make([]*heartbeat.Sender, apb10Senders)
		for i := range senders {
			s, err := heartbeat.New(heartbeat.Config{Service: "fleet", Instance: fmt.Sprintf("i-%05d", i), Target: "monitor:7702",
				Key: key, Interval: time.Second}, mem.dialer(uint64(i)+1))
			if err != nil {
				t.Fatal(err)
			}
			senders[i] = s
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		t0 := time.Now() // bubble time stands still while they start: one instant
		for _, s := range senders {
			wg.Add(1)
			go func() { defer wg.Done(); s.Run(ctx) }()
		}
		time.Sleep(3*time.Second + time.Millisecond)
		synctest.Wait()
		cancel()
		wg.Wait()

		arr.mu.Lock()
		at := arr.all
		arr.mu.Unlock()
		counts, ratio, total := apbBuckets(at, t0.Add(time.Second), 2*time.Second, 100*time.Millisecond)
		t.Logf("pulse: %d senders started at once; per-100ms arrivals in [1s, 3s): %v; max/mean %.3f", apb10Senders, counts, ratio)
		if total < 2*apb10Senders*98/100 || total > 2*apb10Senders*102/100 {
			t.Fatalf("%d beats arrived in two intervals, want %d ± 2 %%", total, 2*apb10Senders)
		}
		for i, s := range senders {
			if st := s.Stats(); st.Beats < 2 || st.Acked != st.Beats {
				t.Fatalf("sender %d: %d beats, %d acked", i, st.Beats, st.Acked)
			}
		}
		if ratio > 1.5 {
			t.Fatalf("max/mean = %.3f > 1.5: a storm", ratio)
		}
	})
}

// TestAP10IntervalChange: 10,000 senders deployed with a 30 s interval
// beat a monitor configured with 30 s; at T = 45 s (every sender has beaten)
// the monitor applies a configuration of 10 s. A sender hears the monitor
// only in the ACK of its next beat, so "within one old interval" is one
// interval of the old schedule: 30 s plus its configured jitter (100 ms,
// the LAN preset's). Pass: every sender's first beat after T is ACKed with
// 10 s and the sender switches (Stats().Interval = 10 s) no later than
// T + 30.1 s, and from then on its beats are 10 s ± 100 ms apart.
func TestAP10IntervalChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		arr := &apb10Arrivals{by: map[string][]time.Time{}}
		mon, key, mem := apb10Setup(t, "30s", arr)
		type adoption struct {
			mu sync.Mutex
			at map[string]time.Time
		}
		adopted := &adoption{at: map[string]time.Time{}}
		senders := make([]*heartbeat.Sender, apb10Senders)
		for i := range senders {
			inst := fmt.Sprintf("i-%05d", i)
			var s *heartbeat.Sender
			var err error
			s, err = heartbeat.New(heartbeat.Config{Service: "fleet", Instance: inst, Target: "monitor:7702",
				Key: key, Interval: 30 * time.Second,
				OnResult: func(r heartbeat.Result) {
					// The directive is applied before the result is reported.
					if s.Stats().Interval == 10*time.Second {
						adopted.mu.Lock()
						if _, ok := adopted.at[inst]; !ok {
							adopted.at[inst] = time.Now()
						}
						adopted.mu.Unlock()
					}
				}}, mem.dialer(uint64(i)+1), heartbeat.WithSeed(uint64(i)+1))
			if err != nil {
				t.Fatal(err)
			}
			senders[i] = s
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, s := range senders {
			wg.Add(1)
			go func() { defer wg.Done(); s.Run(ctx) }()
		}
		time.Sleep(45 * time.Second)
		changedAt := time.Now()
		if err := mon.Apply(&parseConfig(t, apb10Config("10s")).Spec); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Second)
		synctest.Wait()
		cancel()
		wg.Wait()

		const bound = 30*time.Second + 100*time.Millisecond
		var worst time.Duration
		late, missing, badGap := 0, 0, 0
		for i, s := range senders {
			inst := fmt.Sprintf("i-%05d", i)
			at, ok := adopted.at[inst]
			if !ok || s.Stats().Interval != 10*time.Second {
				missing++
				continue
			}
			took := at.Sub(changedAt)
			worst = max(worst, took)
			if took > bound {
				late++
			}
			// Beats after the switch are 10 s ± 100 ms apart.
			var prev time.Time
			for _, b := range arr.by[inst] {
				if b.Before(at) {
					continue
				}
				if !prev.IsZero() {
					if gap := b.Sub(prev); gap < 9900*time.Millisecond || gap > 10100*time.Millisecond {
						badGap++
						if badGap <= 5 {
							t.Errorf("%s: beats %v apart after the switch", inst, gap)
						}
					}
				}
				prev = b
			}
		}
		t.Logf("pulse: 30s → 10s applied at T; %d of %d senders switched, the last at T+%v (bound T+%v); %d late, %d gaps off 10s±100ms",
			apb10Senders-missing, apb10Senders, worst, bound, late, badGap)
		if missing != 0 || late != 0 {
			t.Fatalf("%d senders never switched, %d switched later than one old interval", missing, late)
		}
	})
}

// TestAP10ReloadOverUDP: the daemon in-process watching its pulse.yaml,
// 100 real senders over real UDP. The file changes 1.5 s → 500 ms; then a
// file with `interval: 30` (no unit) is written. Pass: every sender
// switches to 500 ms within one old interval (1.5 s + its 100 ms jitter;
// plus 150 ms for the loopback round trip and timer lateness on a shared
// 2-core machine under -race: the exact bound is TestAP10IntervalChange's)
// of the monitor applying the file; the unit-less file is rejected with the
// line, the field and "needs a unit", and the running 500 ms stays.
func TestAP10ReloadOverUDP(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pulse.yaml")
	write := func(body string) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(strings.ReplaceAll(body, "%KEY%", testKey)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(apb10Config("1500ms"))
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &apbLogBuf{}
	mp := startMonitor(t, daemon.Options{Config: c, ConfigPath: path, Logger: telemetry.NewLogger(logs, telemetry.LogOptions{})})
	ss := newSenders(t)
	const n = 100
	var mu sync.Mutex
	adopted := map[string]time.Time{}
	senders := make([]*heartbeat.Sender, n)
	for i := range senders {
		inst := fmt.Sprintf("u-%03d", i)
		var self atomic.Pointer[heartbeat.Sender] // set once Start returns; a beat may come first
		self.Store(ss.Start(t, heartbeat.Config{Service: "fleet", Instance: inst, Target: mp.D.UDPAddr(), Interval: 1500 * time.Millisecond,
			OnResult: func(r heartbeat.Result) {
				s := self.Load()
				if s == nil || !r.Acked || s.Stats().Interval != 500*time.Millisecond {
					return
				}
				mu.Lock()
				if _, ok := adopted[inst]; !ok {
					adopted[inst] = time.Now()
				}
				mu.Unlock()
			}}))
		senders[i] = self.Load()
	}
	waitFor(t, 10*time.Second, "every sender's first beat", func() bool {
		sv, err := mp.Mon().Service("fleet")
		return err == nil && sv.Instances == n && sv.Counts["alive"] == n
	})
	time.Sleep(time.Second) // into the steady state

	write(apb10Config("500ms"))
	written := time.Now()
	for mp.Mon().Directives("fleet", "").Interval != 500*time.Millisecond {
		if time.Since(written) > 5*time.Second {
			t.Fatal("the monitor did not apply the changed file within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	applied := time.Now()
	time.Sleep(2 * time.Second)
	const bound = 1500*time.Millisecond + 100*time.Millisecond + 150*time.Millisecond
	mu.Lock()
	var worst time.Duration
	late := 0
	for i := range senders {
		at, ok := adopted[fmt.Sprintf("u-%03d", i)]
		if !ok {
			late++
			continue
		}
		worst = max(worst, at.Sub(applied))
		if at.Sub(applied) > bound {
			late++
		}
	}
	mu.Unlock()
	t.Logf("pulse over UDP: file written → applied in %v; %d senders switched to 500ms, the last %v after the apply (bound %v)",
		applied.Sub(written).Round(time.Millisecond), n-late, worst.Round(time.Millisecond), bound)
	if late != 0 {
		t.Fatalf("%d of %d senders did not switch within one old interval", late, n)
	}

	// A duration without a unit: rejected, the running config stays.
	write(strings.Replace(apb10Config("500ms"), "500ms", "30", 1))
	waitFor(t, 5*time.Second, "the rejection to be logged", func() bool {
		for _, l := range logs.lines() {
			if l["msg"] == "configuration rejected; the running configuration stays" {
				return true
			}
		}
		return false
	})
	var rej map[string]any
	for _, l := range logs.lines() {
		if l["msg"] == "configuration rejected; the running configuration stays" {
			rej = l
		}
	}
	if rej["field"] != "services[0].passive.interval" || rej["line"] != float64(5) || !strings.Contains(fmt.Sprint(rej["err"]), `duration "30" needs a unit`) {
		t.Fatalf("rejection line: %v", rej)
	}
	time.Sleep(time.Second)
	for _, s := range senders {
		if iv := s.Stats().Interval; iv != 500*time.Millisecond {
			t.Fatalf("a sender moved to %v after the bad file", iv)
		}
	}
	if d := mp.Mon().Directives("fleet", ""); d.Interval != 500*time.Millisecond {
		t.Fatalf("the monitor's directive is %v after the bad file", d.Interval)
	}
}

// TestAP10Naive runs the seed's sender through the same scenarios: the
// interval is a constant (time.NewTicker(interval) started at once, no
// phase, no jitter) and the ACK is never read. It must fail both halves:
// 10,000 senders beat in the same 100 ms bucket (max/mean far above 1.5),
// and after the monitor's change to 10 s no sender moves off 30 s.
func TestAP10Naive(t *testing.T) {
	t.Run("storm", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			arr := &apb10Arrivals{}
			_, key, mem := apb10Setup(t, "1s", arr)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			t0 := time.Now()
			for i := range apb10Senders {
				p := mem.path(uint64(i) + 1)
				wg.Add(1)
				go func() {
					defer wg.Done()
					apbSeedSender(ctx, p, key, "fleet", fmt.Sprintf("i-%05d", i), time.Second, nil)
				}()
			}
			time.Sleep(3*time.Second + time.Millisecond)
			synctest.Wait()
			cancel()
			wg.Wait()
			counts, ratio, total := apbBuckets(arr.all, t0.Add(time.Second), 2*time.Second, 100*time.Millisecond)
			t.Logf("seed: %d senders started at once; per-100ms arrivals in [1s, 3s): %v; max/mean %.3f", apb10Senders, counts, ratio)
			if total != 2*apb10Senders {
				t.Fatalf("%d beats in two intervals, want %d", total, 2*apb10Senders)
			}
			if ratio <= 1.5 {
				t.Fatalf("the seed's senders stayed under max/mean 1.5 (%.3f): the replay does not bite", ratio)
			}
		})
	})
	t.Run("change", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			arr := &apb10Arrivals{by: map[string][]time.Time{}}
			mon, key, mem := apb10Setup(t, "30s", arr)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for i := range apb10Senders {
				p := mem.path(uint64(i) + 1)
				wg.Add(1)
				go func() {
					defer wg.Done()
					apbSeedSender(ctx, p, key, "fleet", fmt.Sprintf("i-%05d", i), 30*time.Second, nil)
				}()
			}
			time.Sleep(45 * time.Second)
			changedAt := time.Now()
			if err := mon.Apply(&parseConfig(t, apb10Config("10s")).Spec); err != nil {
				t.Fatal(err)
			}
			time.Sleep(60 * time.Second)
			synctest.Wait()
			cancel()
			wg.Wait()
			switched := 0
			for _, at := range arr.by {
				var after []time.Time
				for _, b := range at {
					if b.After(changedAt) {
						after = append(after, b)
					}
				}
				if len(after) >= 2 && after[1].Sub(after[0]) <= 10100*time.Millisecond {
					switched++
				}
			}
			t.Logf("seed: 30s → 10s applied at T; %d of %d senders switched by T+60s (the ACKs carried 10s)", switched, apb10Senders)
			if switched != 0 {
				t.Fatalf("%d seed senders switched: the replay does not bite", switched)
			}
		})
	})
}

// apb10Setup starts a monitor configured with the given beat interval and
// an in-memory network to it whose arrivals arr records.
func apb10Setup(t *testing.T, interval string, arr *apb10Arrivals) (*monitor.Monitor, *wire.Key, *apbMemNet) {
	t.Helper()
	mon, err := monitor.New(monitor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Apply(&parseConfig(t, apb10Config(interval)).Spec); err != nil {
		t.Fatal(err)
	}
	key, err := wire.NewKey(1, []byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	return mon, key, &apbMemNet{key: key, dir: mon.Directives, seen: arr.seen}
}
