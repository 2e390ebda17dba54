package cluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fb4b1dcc/pulse/ingest"
	pulsev1 "github.com/fb4b1dcc/pulse/proto/pulse/v1"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// benchFleet declares n passive instances with 1s beats.
func benchFleet(n int) *fleet {
	f := &fleet{secret: newSecret()}
	for i := range n {
		f.passive = append(f.passive, inst{name: fmt.Sprintf("i%05d", i), zone: string(rune('a' + i%3))})
	}
	return f
}

// beater feeds a monitor 1s beats for every instance, as ingest would
// (batches of 100 every 10ms), and flips the reported status of flip
// instances per second between healthy and degraded: each flip is one
// transition.
func beater(ctx context.Context, tn *testNode, names []string, flipsPerSec int, beats *int64) {
	seq := uint64(0)
	batch := make([]ingest.Observation, 0, 100)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	degraded := map[string]bool{}
	next, flipAcc := 0, 0.0
	for tick := 0; ; tick++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		seq++
		now := time.Now()
		flipAcc += float64(flipsPerSec) / 100
		var flips []string
		for ; flipAcc >= 1; flipAcc-- {
			flips = append(flips, names[(tick*7919+len(flips)*104729)%len(names)])
		}
		for _, name := range flips {
			degraded[name] = !degraded[name]
		}
		batch = batch[:0]
		for range len(names) / 100 {
			name := names[next]
			next = (next + 1) % len(names)
			st := status.Healthy
			if degraded[name] {
				st = status.Degraded
			}
			batch = append(batch, ingest.Observation{Service: "beats", Instance: name, Source: ingest.Passive, Transport: wire.UDP,
				Epoch: 1, Seq: seq, ReceivedAt: now, Interval: time.Second, Status: st})
		}
		tn.mon.ObserveBatch(batch)
		*beats += int64(len(batch))
	}
}

// BenchmarkEtcdWriteLoad: the etcd writes a node makes for 10,000
// instances beating every second, with 0, 10 and 100 transitions per
// second. Writes follow transitions, not beats: with no transition the
// node writes nothing but its keep-alives (which are not writes).
// Reported per second of run: beats, transitions, state records written,
// write transactions (the etcd revision's growth, every writer counted),
// and records per beat (the ratio against the beats baseline: 0 means no
// beat ever causes a write).
func BenchmarkEtcdWriteLoad(b *testing.B) {
	for _, flips := range []int{0, 10, 100} {
		b.Run(fmt.Sprintf("transitions=%d/s", flips), func(b *testing.B) {
			etcd := startEtcd(b)
			cli := etcdClient(b, etcd.Endpoint())
			f := benchFleet(10000)
			// The production publish interval (250ms), not the tests' 100ms.
			tn := startNode(b, "node-1", "a", nodeOpts{endpoint: etcd.Endpoint(), cfg: f.config(b),
				tweak: func(c *Config) { c.PublishInterval = 250 * time.Millisecond }})
			names := make([]string, len(f.passive))
			for i, in := range f.passive {
				names[i] = in.name
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var beats int64
			done := make(chan struct{})
			go func() { defer close(done); beater(ctx, tn, names, flips, &beats) }()
			defer func() { cancel(); <-done }()
			// Warm up: every instance alive and published.
			deadline := time.Now().Add(60 * time.Second)
			for tn.node.Stats().Published < 10000 || countState(tn, names, "alive") < len(names)-2*flips {
				if time.Now().After(deadline) {
					b.Fatalf("warm-up: %d published, %d alive", tn.node.Stats().Published, countState(tn, names, "alive"))
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(time.Second)
			window := 5 * time.Second
			b.ResetTimer()
			var sumBeats, sumPuts, sumTxns, sumTrans, sumRev float64
			var secs float64
			for range b.N {
				rev0 := revision(b, cli)
				s0 := tn.node.Stats()
				tr0 := transitions(tn)
				beats0 := beats
				start := time.Now()
				time.Sleep(window)
				el := time.Since(start).Seconds()
				s1 := tn.node.Stats()
				secs += el
				sumBeats += float64(beats - beats0)
				sumPuts += float64(s1.Published - s0.Published)
				sumTxns += float64(s1.PublishTxns - s0.PublishTxns)
				sumTrans += float64(transitions(tn) - tr0)
				sumRev += float64(revision(b, cli) - rev0)
			}
			b.StopTimer()
			b.ReportMetric(sumBeats/secs, "beats/s")
			b.ReportMetric(sumTrans/secs, "transitions/s")
			b.ReportMetric(sumPuts/secs, "records/s")
			b.ReportMetric(sumRev/secs, "etcd-writes/s")
			b.ReportMetric(sumPuts/max(sumBeats, 1), "records-per-beat")
			if sumTrans > 0 {
				b.ReportMetric(sumPuts/sumTrans, "records-per-transition")
			}
			_ = sumTxns
		})
	}
}

func countState(tn *testNode, names []string, st string) int {
	n := 0
	for _, name := range names {
		if v, err := tn.mon.Instance("beats", name); err == nil && v.State.String() == st {
			n++
		}
	}
	return n
}

// transitions counts the instance transitions the node judged itself.
func transitions(tn *testNode) int {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	n := 0
	for _, e := range tn.events {
		if e.Instance != "" && e.Source != "peer" {
			n++
		}
	}
	return n
}

// BenchmarkForward: what forwarding costs. "local" hands a batch of 256
// beats to the owner's monitor directly (the baseline: a beat that
// reached its owner); "grpc" sends the same batch from another node
// through pulse.v1.Cluster/Forward on loopback; "delivery" is the time
// from the non-owner's ingest hand-off to the owner's monitor, batching
// window (ForwardInterval, 20ms) included.
func BenchmarkForward(b *testing.B) {
	etcd := startEtcd(b)
	f := benchFleet(1024)
	cfg := f.config(b)
	owner := startNode(b, "node-1", "a", nodeOpts{endpoint: etcd.Endpoint(), cfg: cfg})
	other := startNode(b, "node-2", "b", nodeOpts{endpoint: etcd.Endpoint(), cfg: cfg})
	deadline := time.Now().Add(10 * time.Second)
	for owner.node.Ring().Len() != 2 || other.node.Ring().Len() != 2 {
		if time.Now().After(deadline) {
			b.Fatal("no two-node view")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var mine []string
	for _, in := range f.passive {
		if owner.node.Owns("beats", in.name) {
			mine = append(mine, in.name)
		}
	}
	batch := func(seq uint64) []ingest.Observation {
		out := make([]ingest.Observation, 256)
		now := time.Now()
		for i := range out {
			out[i] = ingest.Observation{Service: "beats", Instance: mine[i%len(mine)], Source: ingest.Passive, Transport: wire.UDP,
				Epoch: 1, Seq: seq, ReceivedAt: now, Interval: time.Second, Status: status.Healthy}
		}
		return out
	}
	var local float64
	b.Run("local", func(b *testing.B) {
		for i := range b.N {
			owner.mon.ObserveBatch(batch(uint64(i + 1)))
		}
		local = float64(b.Elapsed().Nanoseconds()) / float64(b.N) / 256
		b.ReportMetric(local, "ns/beat")
	})
	b.Run("grpc", func(b *testing.B) {
		client, err := other.node.peers.client(owner.node.Self())
		if err != nil {
			b.Fatal(err)
		}
		ctx := other.node.peerCtx(context.Background())
		seq := uint64(1 << 20)
		for range b.N {
			seq++
			obs := batch(seq)
			req := &pulsev1.ForwardRequest{FromNode: "node-2", Beats: make([]*pulsev1.ForwardedBeat, len(obs))}
			now := time.Now()
			for j := range obs {
				req.Beats[j] = encodeBeat(&obs[j], now)
			}
			if _, err := client.Forward(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		perBeat := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / 256
		b.ReportMetric(perBeat, "ns/beat")
		if local > 0 {
			b.ReportMetric(perBeat/local, "x-vs-local")
		}
	})
	b.Run("delivery", func(b *testing.B) {
		var lat []time.Duration
		seq := uint64(1 << 30)
		for range b.N {
			seq++
			before := owner.node.Stats().ForwardReceived
			start := time.Now()
			other.node.fwd.forward(batch(seq)[:1])
			for owner.node.Stats().ForwardReceived == before {
				time.Sleep(100 * time.Microsecond)
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	})
}

// revision is etcd's current revision: it grows by one per write
// transaction, whoever wrote.
func revision(b *testing.B, cli *clientv3.Client) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, "/pulse/v1/none")
	if err != nil {
		b.Fatal(err)
	}
	return r.Header.Revision
}
