package incidents

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/internal/faultnet"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// AP-13 (INC-2022-199): UDP heartbeats with no application ACK and no
// retransmission. Network jitter dropped beats; the registry counted three
// missed beats as a dead instance and took healthy instances out of
// service.
//
// Pass criterion (INCIDENTS.md): 30 % random loss plus bursts over 10,000
// instance-minutes: no false removal, and a lost beat is recovered within
// 200 ms.
//
// Two halves. The long one (10,000 instance-minutes) is about the sender's
// retransmission schedule and the monitor's judging, so it runs in a
// synctest bubble: pulse's real heartbeat.Sender and real monitor.Monitor
// (LAN preset: 1 s beats) joined by the in-memory network of
// helpers_b_test.go. The recovery half is about the network, so it runs in
// real time: real senders, the daemon in-process, real UDP through
// internal/faultnet.

// apb13Loss is the long half's fault model: on every path 30 % of packets
// are lost each way independently, and bursts of total loss (200 ms to
// 1.5 s) come every 20 s on average (4 % of the time).
var apb13Loss = apbLoss{Loss: 0.3, BurstEvery: 20 * time.Second, BurstMin: 200 * time.Millisecond, BurstMax: 1500 * time.Millisecond}

// apb13RelayFaults is the real half's: faultnet's 30 % independent loss
// each way plus Gilbert–Elliott bursts (one packet in 100 starts a burst;
// bursts last 10 packets of the relay's traffic on average, all lost).
var apb13RelayFaults = faultnet.Faults{Loss: 0.3, BurstEnter: 0.01, BurstExit: 0.1, BurstLoss: 1}

const (
	apb13Instances = 250
	apb13Minutes   = 40 // 250 × 40 = 10,000 instance-minutes
	apb13Interval  = time.Second
)

func apb13Config(interval time.Duration) string {
	return fmt.Sprintf(`
services:
  - name: fleet
    passive:
      interval: %s
      keys: [{id: 1, secret: {value: %%KEY%%}}]
`, interval)
}

// apb13Outcome is what the long half measured.
type apb13Outcome struct {
	beats, sent, delivered         uint64
	downs, suspects, protections   int
	downReasons                    []string
	firstLostRandom, random200     int // first copy lost outside a burst; of those, delivered within 200 ms
	firstLostBurst, burst200       int
	neverDelivered, worstRecovered int64
}

// TestAP13LossAndBurstsNoFalseRemoval is the long half. Pass: no instance
// is ever judged down (no false removal) and protection never had to step
// in (the result is the beats' own reliability, not the correlated-failure
// guard); of the beats whose first copy was lost outside a burst, at least
// 90 % are delivered within 200 ms: with MinRTO 20 ms, at least two
// retransmissions leave inside 200 ms even after one back-off doubling
// (40 and 120 ms), so independent 30 % loss leaves ≤ 0.3² = 9 % unrecovered
// within 200 ms (three retransmissions, ≤ 2.7 %, in the common case).
func TestAP13LossAndBurstsNoFalseRemoval(t *testing.T) {
	var out apb13Outcome
	synctest.Test(t, func(t *testing.T) {
		cfg := parseConfig(t, apb13Config(apb13Interval))
		mon, err := monitor.New(monitor.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := mon.Apply(&cfg.Spec); err != nil {
			t.Fatal(err)
		}
		key, err := wire.NewKey(1, []byte(testKey))
		if err != nil {
			t.Fatal(err)
		}
		// Each sender has one beat outstanding at a time, and its copies
		// arrive (in memory, at once) before its result is reported, so one
		// slot per instance follows the current beat.
		type slot struct {
			seq                uint64
			arrived            bool
			at                 time.Time
			attempt            uint8
			firstLost, inBurst bool
		}
		var mu sync.Mutex
		slots := map[string]*slot{}
		for i := range apb13Instances {
			slots[fmt.Sprintf("i-%04d", i)] = &slot{}
		}
		cur := func(inst string, seq uint64) *slot {
			sl := slots[inst]
			if sl.seq != seq {
				*sl = slot{seq: seq}
			}
			return sl
		}
		mem := &apbMemNet{key: key, sink: mon, dir: mon.Directives, loss: apb13Loss, trust: true,
			seen: func(in *apbMemInst, b *wire.Beat, at time.Time, fresh bool) {
				if fresh {
					mu.Lock()
					sl := cur(in.Instance, b.Seq)
					sl.arrived, sl.at, sl.attempt = true, at, b.Attempt
					mu.Unlock()
				}
			},
			lost: func(in *apbMemInst, b *wire.Beat, burst bool) {
				if b.Attempt == 0 {
					mu.Lock()
					sl := cur(in.Instance, b.Seq)
					sl.firstLost, sl.inBurst = true, burst
					mu.Unlock()
				}
			}}
		ctx, cancel := context.WithCancel(context.Background())
		monDone := make(chan error, 1)
		go func() { monDone <- mon.Run(ctx) }()
		evs := &apbEvents{}
		w := mon.Watch(0)
		evDone := make(chan struct{})
		go func() { defer close(evDone); evs.follow(w) }()

		var wg sync.WaitGroup
		senders := make([]*heartbeat.Sender, apb13Instances)
		for i := range apb13Instances {
			inst := fmt.Sprintf("i-%04d", i)
			s, err := heartbeat.New(heartbeat.Config{Service: "fleet", Instance: inst, Target: "monitor:7702", Key: key,
				Interval: apb13Interval,
				OnResult: func(r heartbeat.Result) {
					if r.Attempts == 0 || errors.Is(r.Err, context.Canceled) {
						return // never sent, or cut short by the end of the run
					}
					mu.Lock()
					defer mu.Unlock()
					a := cur(inst, r.Seq)
					if !a.arrived {
						out.neverDelivered++
					}
					if !a.firstLost {
						return
					}
					in200 := a.arrived && a.at.Sub(r.SentAt) <= 200*time.Millisecond
					if in200 {
						out.worstRecovered = max(out.worstRecovered, int64(a.at.Sub(r.SentAt)))
					}
					if a.inBurst {
						out.firstLostBurst++
						if in200 {
							out.burst200++
						}
						return
					}
					out.firstLostRandom++
					if in200 {
						out.random200++
					}
				}}, mem.dialer(uint64(i)+1), heartbeat.WithSeed(uint64(i)+1))
			if err != nil {
				t.Fatal(err)
			}
			senders[i] = s
			wg.Add(1)
			go func() { defer wg.Done(); s.Run(ctx) }()
		}
		time.Sleep(apb13Minutes * time.Minute)
		synctest.Wait()
		cancel()
		wg.Wait()
		if err := <-monDone; err != nil {
			t.Fatal(err)
		}
		w.Close()
		<-evDone

		st := mem.Stats()
		out.sent, out.delivered = st.Sent, st.Accepted
		for _, s := range senders {
			out.beats += s.Stats().Beats
		}
		for _, e := range evs.list() {
			switch {
			case e.Instance != "" && e.To == "down":
				out.downs++
				out.downReasons = append(out.downReasons, e.Instance+": "+e.Reason)
			case e.Instance != "" && e.To == "suspect":
				out.suspects++
			case e.To == "protection_on":
				out.protections++
			}
		}
		t.Logf("network: %+v", st)
	})
	t.Logf("pulse: %d instances × %d min at %v: %d beats, %d transmissions, %d delivered (%d never)",
		apb13Instances, apb13Minutes, apb13Interval, out.beats, out.sent, out.delivered, out.neverDelivered)
	t.Logf("first copy lost at random: %d, delivered within 200 ms: %d (%.2f %%); lost in a burst: %d, within 200 ms: %d; worst recovery %v",
		out.firstLostRandom, out.random200, 100*float64(out.random200)/float64(max(out.firstLostRandom, 1)),
		out.firstLostBurst, out.burst200, time.Duration(out.worstRecovered))
	t.Logf("verdicts: %d suspect, %d down, %d protection_on", out.suspects, out.downs, out.protections)
	if want := uint64(apb13Instances * apb13Minutes * 60 * 95 / 100); out.beats < want {
		t.Fatalf("only %d beats made, want ≥ %d (10,000 instance-minutes at 1 s)", out.beats, want)
	}
	if out.downs != 0 {
		t.Errorf("%d false removals: %v", out.downs, out.downReasons)
	}
	if out.protections != 0 {
		t.Errorf("protection turned on %d times", out.protections)
	}
	if out.firstLostRandom < 10000 {
		t.Fatalf("only %d first copies lost at random: the fault model did not run", out.firstLostRandom)
	}
	if share := float64(out.random200) / float64(out.firstLostRandom); share < 0.90 {
		t.Errorf("%.4f of randomly lost beats recovered within 200 ms, want ≥ 0.90", share)
	}
}

// TestAP13LostBeatRecoveredOverUDP is the real half: real senders, the
// daemon in-process, real UDP through faultnet.
//
// Part 1, a lost beat: ten times, the relay drops everything the moment a
// beat is sent (its first copy is lost, as faultnet's counter shows) and
// the loss ends at once. Pass: every one of those beats is recovered by a
// retransmission and ACKed within 200 ms of its first transmission, and
// the monitor has every beat the sender made.
//
// Part 2, the fault model: 20 senders beat every 200 ms for 6 s through
// 30 % loss each way plus bursts. Pass: no instance is judged down.
func TestAP13LostBeatRecoveredOverUDP(t *testing.T) {
	mp := startMonitor(t, daemon.Options{Config: parseConfig(t, apb13Config(300*time.Millisecond))})
	relay, err := faultnet.New(faultnet.Config{Upstream: mp.D.UDPAddr(), Seed: 13})
	if err != nil {
		t.Fatal(err)
	}
	relay.Start()
	defer relay.Close()
	ss := newSenders(t)

	type result struct {
		r    heartbeat.Result
		took time.Duration // from the first transmission to the sender learning it got through
	}
	results := make(chan result, 64)
	s := ss.Start(t, heartbeat.Config{Service: "fleet", Instance: "lossy-1", Target: relay.Addr(), Interval: 300 * time.Millisecond,
		OnResult: func(r heartbeat.Result) {
			select {
			case results <- result{r, time.Since(r.SentAt)}:
			default:
			}
		}})
	next := func() result {
		t.Helper()
		select {
		case r := <-results:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no beat result for 5s")
		}
		return result{}
	}
	var recs []result
	for len(recs) < 10 {
		// Steady state first: a beat ACKed at its first transmission.
		if r := next(); !r.r.Acked || r.r.Attempts != 1 {
			continue
		}
		before := relay.Stats().Up.Lost
		if err := relay.SetFaults(faultnet.Faults{Loss: 1}, faultnet.Faults{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for relay.Stats().Up.Lost == before {
			if time.Now().After(deadline) {
				t.Fatal("the next beat was not dropped within 5s")
			}
			time.Sleep(500 * time.Microsecond)
		}
		if err := relay.SetFaults(faultnet.Faults{}, faultnet.Faults{}); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, next())
	}
	var worst time.Duration
	var attempts []int
	for i, rc := range recs {
		worst = max(worst, rc.took)
		attempts = append(attempts, rc.r.Attempts)
		if !rc.r.Acked || rc.r.Attempts < 2 || rc.took > 200*time.Millisecond {
			t.Errorf("lost beat %d (seq %d): acked=%v after %d transmissions, %v after the first", i, rc.r.Seq, rc.r.Acked, rc.r.Attempts, rc.took)
		}
	}
	t.Logf("10 lost beats recovered, the worst %v after its first transmission; transmissions %v", worst, attempts)
	next() // one more clean beat, so every beat so far has been judged
	st := s.Stats()
	if v, err := mp.Mon().Instance("fleet", "lossy-1"); err != nil || v.Beats < st.Acked || st.Unacked != 0 {
		t.Fatalf("the monitor has %d beats; the sender made %d, %d acked, %d given up (%v)", v.Beats, st.Beats, st.Acked, st.Unacked, err)
	}
	ss.Stop("fleet", "lossy-1")
	if err := mp.Mon().Deregister("fleet", "lossy-1", "replay part 1 done"); err != nil {
		t.Fatal(err)
	}

	// Part 2.
	if err := relay.SetFaults(apb13RelayFaults, apb13RelayFaults); err != nil {
		t.Fatal(err)
	}
	w := mp.Mon().Watch(mp.Mon().LastSeq())
	evs := &apbEvents{}
	evDone := make(chan struct{})
	go func() { defer close(evDone); evs.follow(w) }()
	fleet := make([]*heartbeat.Sender, 20)
	for i := range fleet {
		fleet[i] = ss.Start(t, heartbeat.Config{Service: "fleet", Instance: fmt.Sprintf("f-%02d", i), Target: relay.Addr(), Interval: 200 * time.Millisecond})
	}
	time.Sleep(6 * time.Second)
	w.Close() // the verdicts while the senders ran; stopping them is a real death
	<-evDone
	ss.StopAll()
	var beats, retrans uint64
	for _, f := range fleet {
		beats += f.Stats().Beats
		retrans += f.Stats().Retransmits
	}
	rs := relay.Stats()
	t.Logf("fault model over UDP: %d beats, %d retransmissions; relay up %+v down %+v; %d suspect, %d down",
		beats, retrans, rs.Up, rs.Down, evs.count("suspect"), evs.count("down"))
	for _, e := range evs.list() {
		if e.To == "down" {
			t.Errorf("%s judged down under loss: %s", e.Instance, e.Reason)
		}
	}
	if rs.Up.Lost == 0 || rs.Up.BurstLost == 0 {
		t.Fatalf("the relay lost nothing: %+v", rs.Up)
	}
}

// TestAP13Naive runs the seed's protocol through both halves: one UDP
// datagram per beat on a hard-coded ticker, no ACK, no retransmission, and
// the seed's judge, "three missed beats in a row → offline". It must fail
// the criterion: false removals in the long half, and a lost beat that is
// never recovered over real UDP.
func TestAP13Naive(t *testing.T) {
	t.Run("long", func(t *testing.T) {
		var removals, beats, delivered, healthyRemoved int
		synctest.Test(t, func(t *testing.T) {
			judge := &apb13SeedJudge{last: map[string]time.Time{}}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var sent, arrived atomic.Int64
			names := make([]string, apb13Instances)
			for i := range apb13Instances {
				names[i] = fmt.Sprintf("i-%04d", i)
				// The same fault model and seeds as pulse's half; the
				// seed's datagram is two bytes and carries no identity, so
				// the path is its source address.
				p := &apb13SeedPath{judge: judge, name: names[i], arrived: &arrived,
					loss: apbPathLoss{m: apb13Loss, r: rand.New(rand.NewPCG(uint64(i)+1, (uint64(i)+1)^0x5eed))}}
				wg.Add(1)
				go func() {
					defer wg.Done()
					apb13SeedHeartbeat(ctx, p, &sent)
				}()
			}
			wg.Add(1)
			go func() { defer wg.Done(); judge.run(ctx, names) }()
			time.Sleep(apb13Minutes * time.Minute)
			synctest.Wait()
			cancel()
			wg.Wait()
			removals, healthyRemoved = judge.removals, len(judge.removed)
			beats, delivered = int(sent.Load()), int(arrived.Load())
		})
		t.Logf("seed protocol: %d beats over 10,000 instance-minutes, %d delivered, %d never recovered (0 within 200 ms); "+
			"%d removals of live instances (%d of %d instances removed at least once)",
			beats, delivered, beats-delivered, removals, healthyRemoved, apb13Instances)
		if removals == 0 {
			t.Fatal("the seed's protocol removed no live instance: the replay does not bite")
		}
		if beats-delivered == 0 {
			t.Fatal("no beat was lost")
		}
	})

	t.Run("udp", func(t *testing.T) {
		mp := startMonitor(t, daemon.Options{Config: parseConfig(t, apb13Config(300*time.Millisecond))})
		relay, err := faultnet.New(faultnet.Config{Upstream: mp.D.UDPAddr(), Seed: 13})
		if err != nil {
			t.Fatal(err)
		}
		relay.Start()
		defer relay.Close()
		key, err := wire.NewKey(1, []byte(testKey))
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("udp", relay.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		beats := func() uint64 {
			v, err := mp.Mon().Instance("fleet", "seed-1")
			if err != nil {
				return 0
			}
			return v.Beats
		}
		send := func(seq uint64) {
			b := wire.Beat{Status: status.Healthy, Epoch: 1, Seq: seq, Interval: 300 * time.Millisecond,
				Service: []byte("fleet"), Instance: []byte("seed-1")}
			pkt, err := wire.AppendBeat(nil, &b, key)
			if err != nil {
				t.Fatal(err)
			}
			c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.Write(pkt); err != nil {
				t.Fatal(err)
			}
		}
		send(1)
		waitFor(t, 5*time.Second, "the first beat", func() bool { return beats() == 1 })
		// The same lost beat as the pulse replay: dropped, then the loss ends.
		if err := relay.SetFaults(faultnet.Faults{Loss: 1}, faultnet.Faults{}); err != nil {
			t.Fatal(err)
		}
		before := relay.Stats().Up.Lost
		send(2)
		waitFor(t, 5*time.Second, "beat 2 to be dropped", func() bool { return relay.Stats().Up.Lost > before })
		if err := relay.SetFaults(faultnet.Faults{}, faultnet.Faults{}); err != nil {
			t.Fatal(err)
		}
		lostAt := time.Now()
		time.Sleep(time.Second) // five times the criterion's 200 ms
		got := beats()
		t.Logf("seed protocol over UDP: the monitor has %d of 2 beats %v after the loss ended", got, time.Since(lostAt).Round(time.Millisecond))
		if got != 1 {
			t.Fatalf("the monitor has %d beats: the lost beat was recovered?", got)
		}
	})
}

// apb13SeedJudge is the seed's registry: an instance whose beat is missing
// at three checks in a row is taken offline (摘流). Checks run once per
// interval, half an interval after the beats are due.
type apb13SeedJudge struct {
	mu       sync.Mutex
	last     map[string]time.Time
	removals int
	removed  map[string]bool
}

func (j *apb13SeedJudge) arrive(name string, at time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.last[name] = at
}

// apb13SeedHeartbeat is the seed's sender (its Python, in Go): a fixed
// ticker and sock.sendto(b"\x01\x00", peer); no sequence number, no ACK,
// no retry.
func apb13SeedHeartbeat(ctx context.Context, c io.Writer, sent *atomic.Int64) {
	ticker := time.NewTicker(apb13Interval)
	defer ticker.Stop()
	pkt := []byte{0x01, 0x00}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		c.Write(pkt)
		sent.Add(1)
	}
}

// apb13SeedPath is one instance's path to the seed's registry, through the
// fault model.
type apb13SeedPath struct {
	mu      sync.Mutex
	loss    apbPathLoss
	judge   *apb13SeedJudge
	name    string
	arrived *atomic.Int64
}

func (p *apb13SeedPath) Write(b []byte) (int, error) {
	now := time.Now()
	p.mu.Lock()
	lost, _ := p.loss.lost(now)
	p.mu.Unlock()
	if !lost {
		p.arrived.Add(1)
		p.judge.arrive(p.name, now)
	}
	return len(b), nil
}

func (j *apb13SeedJudge) run(ctx context.Context, names []string) {
	j.removed = map[string]bool{}
	missed := map[string]int{}
	select {
	case <-ctx.Done():
		return
	case <-time.After(apb13Interval + apb13Interval/2):
	}
	ticker := time.NewTicker(apb13Interval)
	defer ticker.Stop()
	for {
		now := time.Now()
		j.mu.Lock()
		for _, n := range names {
			if now.Sub(j.last[n]) > apb13Interval {
				missed[n]++
				if missed[n] == 3 {
					j.removals++
					j.removed[n] = true
				}
			} else {
				missed[n] = 0
			}
		}
		j.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
