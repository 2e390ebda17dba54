package heartbeat_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/heartbeat"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/internal/faultnet"
	"github.com/fb4b1dcc/pulse/wire"
)

// TestRetransmitUnderIndependentLoss: 30 % loss each way through the relay.
// With MinRTO 20 ms and doubling, retransmissions go out 20, 60 and 140 ms
// after the first send (the next at 300 ms), so k = 3 retransmissions fit
// in 200 ms and a beat reaches the sink within 200 ms with probability
// 1 − 0.3^(k+1) = 0.9919. Over ≥ 10,000 beats the measured share must be
// within ±1 % of that, and no beat may be observed twice even though lost
// ACKs cause retransmissions of beats that already arrived.
func TestRetransmitUnderIndependentLoss(t *testing.T) {
	senders, minBeats := 1000, 10000
	if raceEnabled {
		senders, minBeats = 250, 2500 // same ±1 % bound: still > 5 binomial SDs at 2,500 beats
	}
	const (
		loss     = 0.3
		perSend  = 11 // beats per sender that are measured
		interval = 500 * time.Millisecond
		budget   = 200 * time.Millisecond
		minRTO   = 20 * time.Millisecond
	)
	k := 0
	for at, rto := minRTO, minRTO; at <= budget; rto *= 2 {
		k++
		at += 2 * rto
	}
	if k != 3 {
		t.Fatalf("schedule arithmetic: k = %d, want 3", k)
	}
	want := 1 - math.Pow(loss, float64(k+1))

	key := testKey(t)
	m := startMonitor(t, key, monitorOpts{udp: true})
	relay, err := faultnet.New(faultnet.Config{Upstream: m.udp, Seed: 30, Up: faultnet.Faults{Loss: loss}, Down: faultnet.Faults{Loss: loss}})
	if err != nil {
		t.Fatal(err)
	}
	relay.Start()
	defer relay.Close()

	type beatKey struct {
		inst string
		seq  uint64
	}
	var mu sync.Mutex
	firstSent := map[beatKey]time.Time{}
	rttHist := map[time.Duration]int{}
	var slow []string
	senderList := make([]*heartbeat.Sender, senders)
	for i := range senders {
		inst := fmt.Sprintf("i-%04d", i)
		s, err := heartbeat.New(heartbeat.Config{
			Service: "api", Instance: inst, Target: relay.Addr(), Key: key,
			Interval: interval, Jitter: interval / 10, MinRTO: minRTO,
			OnResult: func(r heartbeat.Result) {
				if r.Err != nil && r.Attempts == 0 {
					return // not sent (socket not ready yet)
				}
				mu.Lock()
				firstSent[beatKey{inst, r.Seq}] = r.SentAt
				if r.Acked {
					rttHist[min(r.RTT/time.Millisecond, 50)]++
					if r.RTT > 10*time.Millisecond && len(slow) < 10 {
						slow = append(slow, fmt.Sprintf("%s seq %d attempts %d rtt %v sent %v", inst, r.Seq, r.Attempts, r.RTT, r.SentAt.Format("05.000")))
					}
				}
				mu.Unlock()
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		senderList[i] = s
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Start the senders over one interval: this test is about loss, not
	// about a start-up storm on two cores, which would inflate the first
	// RTT samples and with them the RTO.
	for _, s := range senderList {
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(ctx) }()
		time.Sleep(interval / time.Duration(senders))
	}
	measureFrom := time.Now().Add(interval)
	// Run for the measured beats plus one interval so the last measured
	// beats' windows close before shutdown.
	time.Sleep(time.Duration(perSend+2) * interval)
	cancel()
	wg.Wait()
	m.stop()

	obs := m.sink.all()
	seen := map[beatKey]ingest.Observation{}
	for _, o := range obs {
		bk := beatKey{o.Instance, o.Seq}
		if _, dup := seen[bk]; dup {
			t.Fatalf("beat %v observed twice", bk)
		}
		seen[bk] = o
	}
	var total, inBudget int
	var srttMax time.Duration
	for _, s := range senderList {
		srttMax = max(srttMax, s.Stats().SRTT)
	}
	cut := time.Now().Add(-interval) // beats sent in the last interval may still have had retransmissions pending
	mu.Lock()
	for bk, sent := range firstSent {
		if sent.After(cut) || sent.Before(measureFrom) {
			continue
		}
		total++
		if o, ok := seen[bk]; ok && o.ReceivedAt.Sub(sent) <= budget {
			inBudget++
		}
	}
	mu.Unlock()
	if testing.Verbose() {
		hist := map[string]int{}
		for bk, sent := range firstSent {
			if sent.After(cut) || sent.Before(measureFrom) {
				continue
			}
			o, ok := seen[bk]
			switch {
			case !ok:
				hist["never"]++
			case o.ReceivedAt.Sub(sent) > budget:
				hist[fmt.Sprintf("late attempt %d %v", o.Attempt, o.ReceivedAt.Sub(sent).Round(10*time.Millisecond))]++
			default:
				hist[fmt.Sprintf("ok attempt %d", o.Attempt)]++
			}
		}
		t.Logf("%v", hist)
		var big int
		for _, s := range senderList {
			if s.Stats().SRTT > 5*time.Millisecond {
				big++
			}
		}
		t.Logf("senders with SRTT > 5ms: %d; rtt ms hist %v; slow %v", big, rttHist, slow)
	}
	share := float64(inBudget) / float64(total)
	st := m.r.Stats()
	t.Logf("%d beats, %d within %v: %.4f (want %.4f ± 0.01); relay %+v; duplicates dropped %d; max SRTT %v",
		total, inBudget, budget, share, want, relay.Stats().Up, st.Drops(ingest.DropDuplicate), srttMax)
	if total < minBeats {
		t.Fatalf("only %d beats measured, want ≥ %d", total, minBeats)
	}
	if math.Abs(share-want) > 0.01 {
		t.Fatalf("share within %v = %.4f, want %.4f ± 0.01 (k = %d; max SRTT %v: k = 3 needs RTO = MinRTO)", budget, share, want, k, srttMax)
	}
	if st.Drops(ingest.DropDuplicate) == 0 {
		t.Fatal("no duplicate was dropped: lost ACKs should have caused retransmissions of delivered beats")
	}
}

// tapConn records when each transmission of each beat was written.
type tapConn struct {
	net.Conn
	mu    sync.Mutex
	sends []tapSend
}

type tapSend struct {
	at      time.Time
	seq     uint64
	attempt uint8
}

func (c *tapConn) Write(p []byte) (int, error) {
	var b wire.Beat
	if wire.DecodeBeat(p, &b) == nil {
		c.mu.Lock()
		c.sends = append(c.sends, tapSend{time.Now(), b.Seq, b.Attempt})
		c.mu.Unlock()
	}
	return c.Conn.Write(p)
}

func (c *tapConn) firstSend(seq uint64) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.sends {
		if s.seq == seq && s.attempt == 0 {
			return s.at, true
		}
	}
	return time.Time{}, false
}

// TestBeatGetsThroughWhenBurstEnds: every packet is lost for 250 ms from
// the moment a beat is first sent. The beat is still inside its interval,
// so the first retransmission after the burst (at 300 ms: 20+40+80+160)
// delivers it; it is observed once, as attempt 4.
func TestBeatGetsThroughWhenBurstEnds(t *testing.T) {
	key := testKey(t)
	m := startMonitor(t, key, monitorOpts{udp: true})
	relay, err := faultnet.New(faultnet.Config{Upstream: m.udp, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	relay.Start()
	defer relay.Close()
	tap := &tapConn{}
	res := newResults()
	s, err := heartbeat.New(heartbeat.Config{
		Service: "api", Instance: "api-1", Target: relay.Addr(), Key: key,
		Interval: time.Second, Jitter: 50 * time.Millisecond, MaxRetransmits: 6, OnResult: res.add,
	}, heartbeat.WithDialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tap.Conn = c
		return tap, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	rs := res.waitN(t, 1, 3*time.Second)
	if !rs[0].Acked {
		t.Fatalf("first beat: %+v", rs[0])
	}
	relay.SetFaults(faultnet.Faults{Loss: 1}, faultnet.Faults{Loss: 1})
	var first time.Time
	deadline := time.Now().Add(3 * time.Second)
	for {
		if at, ok := tap.firstSend(2); ok {
			first = at
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("beat 2 was never sent")
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(time.Until(first.Add(250 * time.Millisecond)))
	relay.SetFaults(faultnet.Faults{}, faultnet.Faults{})
	burstEnd := time.Now()
	obs := m.sink.waitFor(t, 2*time.Second, func(o []ingest.Observation) bool { return len(o) >= 2 })
	o := obs[1]
	if o.Seq != 2 || o.Attempt != 4 {
		t.Fatalf("beat 2 arrived as seq %d attempt %d, want attempt 4 (the first retransmission after the burst)", o.Seq, o.Attempt)
	}
	if d := o.ReceivedAt.Sub(burstEnd); d < 0 || d > 100*time.Millisecond {
		t.Fatalf("beat 2 arrived %v after the burst ended; want within the retransmission gap (≤ 50 ms + scheduling)", d)
	}
	rs = res.waitN(t, 2, 2*time.Second)
	if !rs[1].Acked || rs[1].Attempts != 5 {
		t.Fatalf("beat 2 result %+v", rs[1])
	}
}
