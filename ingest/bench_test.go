package ingest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/wire"
	"golang.org/x/net/ipv4"
)

// benchPackets is a pool of distinct, signed beats: benchInstances
// instances × benchSeqs sequence numbers, ordered round-robin so every
// beat is fresh when sent once in order.
// benchReaders and benchBatch are the reader goroutine count and read
// batch size of both the baseline and the Receiver (the Receiver's
// defaults on this 2-core machine).
var benchReaders = min(runtime.GOMAXPROCS(0), 4)

const benchBatch = 256

const (
	benchInstances = 4096
	benchSeqs      = 256
)

var benchPool = sync.OnceValues(func() ([][]byte, *wire.Keyring) {
	k, _ := wire.NewKey(1, bytes.Repeat([]byte{0xa1}, 32))
	ring, _ := wire.NewKeyring(map[string][]*wire.Key{"api": {k}})
	pkts := make([][]byte, 0, benchInstances*benchSeqs)
	insts := make([][]byte, benchInstances)
	for i := range insts {
		insts[i] = []byte(fmt.Sprintf("api-%04d", i))
	}
	for s := uint64(1); s <= benchSeqs; s++ {
		for i := range insts {
			b := beat(s)
			b.Instance = insts[i]
			p, _ := wire.AppendBeat(nil, &b, k)
			pkts = append(pkts, p)
		}
	}
	return pkts, ring
})

// blast sends n packets from the pool to conn as fast as it can, in
// batches of 64 with sendmmsg. There is no flow control: what the receiver
// cannot keep up with the kernel drops, so both receivers are measured at
// their capacity with the same sender.
func blast(conn *net.UDPConn, pkts [][]byte, n int) {
	pc := ipv4.NewPacketConn(conn)
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = make([][]byte, 1)
	}
	sent := 0
	for sent < n {
		k := min(64, n-sent)
		for j := range k {
			msgs[j].Buffers[0] = pkts[(sent+j)%len(pkts)]
		}
		m, err := pc.WriteBatch(msgs[:k], 0)
		if err != nil {
			continue
		}
		sent += m
	}
}

// rate runs send and returns how many packets progress saw, per second,
// from the start until progress last moved (it stops moving 20 ms after
// the sender is done and the receiver has drained its socket).
func rate(send func(), progress func() int64) (float64, int64) {
	start := time.Now()
	sent := make(chan struct{})
	go func() { send(); close(sent) }()
	last, lastAt := int64(0), start
	senderDone := false
	for {
		time.Sleep(time.Millisecond)
		now := time.Now()
		if p := progress(); p != last {
			last, lastAt = p, now
		}
		select {
		case <-sent:
			senderDone = true
		default:
		}
		if senderDone && now.Sub(lastAt) > 20*time.Millisecond {
			return float64(last) / lastAt.Sub(start).Seconds(), last
		}
	}
}

func benchSender(b *testing.B, to *net.UDPAddr) *net.UDPConn {
	c, err := net.DialUDP("udp", nil, to)
	if err != nil {
		b.Fatal(err)
	}
	c.SetWriteBuffer(4 << 20)
	c.SetReadBuffer(4096) // ACKs are not read; let the kernel drop them
	return c
}

// rawReadBatch measures the baseline: benchReaders goroutines doing x/net
// ReadBatch of benchBatch on one socket, counting packets and nothing else.
func rawReadBatch(b *testing.B, pkts [][]byte, n int) (float64, int64) {
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	ln.SetReadBuffer(4 << 20)
	var count atomic.Int64
	var readers sync.WaitGroup
	for range benchReaders {
		readers.Add(1)
		go func() {
			defer readers.Done()
			pc := ipv4.NewPacketConn(ln)
			msgs := make([]ipv4.Message, benchBatch)
			for i := range msgs {
				msgs[i].Buffers = [][]byte{make([]byte, readBufSize)}
			}
			for {
				k, err := pc.ReadBatch(msgs, 0)
				if err != nil {
					return
				}
				count.Add(int64(k))
			}
		}()
	}
	snd := benchSender(b, ln.LocalAddr().(*net.UDPAddr))
	r, got := rate(func() { blast(snd, pkts, n) }, count.Load)
	snd.Close()
	ln.Close()
	readers.Wait()
	return r, got
}

// ingestUDP measures the Receiver: decode, authenticate, intern, replay
// window, queue, sink (which counts), signed ACK written back.
func ingestUDP(b *testing.B, pkts [][]byte, ring *wire.Keyring, n int, noAcks bool) (float64, float64) {
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	var count atomic.Int64
	r, err := New(Config{UDPConn: ln, Keys: ring, Readers: benchReaders, BatchSize: benchBatch, QueueSize: 1 << 16, benchNoAcks: noAcks,
		Sink:       SinkFunc(func(obs []Observation) { count.Add(int64(len(obs))) }),
		Directives: func(string, string) wire.Directive { return wire.Directive{Interval: 10 * time.Second} }})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-r.Ready()
	// Warm up: intern every instance once (the only allocation per
	// instance), outside the measurement.
	snd := benchSender(b, ln.LocalAddr().(*net.UDPAddr))
	for count.Load() < benchInstances {
		blast(snd, pkts[:benchInstances], benchInstances) // repeats are duplicates: harmless
		time.Sleep(20 * time.Millisecond)
	}
	count.Store(0)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	rt, got := rate(func() { blast(snd, pkts[benchInstances:], n) }, count.Load)
	runtime.ReadMemStats(&ms1)
	cancel()
	<-done
	snd.Close()
	st := r.Stats()
	for _, reason := range []DropReason{DropMalformed, DropOversized, DropAuth, DropReplay, DropOverflow, DropLimit} {
		if st.Drops(reason) != 0 {
			b.Fatalf("%d beats dropped as %v during the benchmark", st.Drops(reason), reason)
		}
	}
	return rt, float64(ms1.Mallocs-ms0.Mallocs) / float64(got)
}

// BenchmarkUDPIngest compares the Receiver's UDP path with a raw ReadBatch
// loop that only counts, fed by the same sender in the same run.
func BenchmarkUDPIngest(b *testing.B) {
	pkts, ring := benchPool()
	n := min(b.N, len(pkts)-benchInstances)
	// The machine is shared and noisy: interleave three rounds and keep
	// each side's best, so a burst of someone else's load does not land
	// on one side only.
	var raw, full, noAck, allocs float64
	for range 3 {
		r, _ := rawReadBatch(b, pkts, n)
		f, a := ingestUDP(b, pkts, ring, n, false)
		na, _ := ingestUDP(b, pkts, ring, n, true)
		raw, full, noAck, allocs = max(raw, r), max(full, f), max(noAck, na), max(allocs, a)
	}
	b.ReportMetric(raw, "raw-beats/s")
	b.ReportMetric(full, "beats/s")
	b.ReportMetric(full/raw, "x-vs-baseline")
	// Decode + authenticate + intern + dedupe + hand to the sink, without
	// the ACK sends: the definition of the reader path.
	b.ReportMetric(noAck/raw, "noack-x-vs-baseline")
	// Process-wide mallocs during the measured ingest phase per observed
	// beat (the sender goroutine's included): an upper bound for the
	// reader path.
	b.ReportMetric(allocs, "allocs/beat")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkHTTPBeat compares POST /api/v1/beat with a bare handler that
// answers 204, over real loopback connections with the same client and
// the same request bodies, in the same run.
func BenchmarkHTTPBeat(b *testing.B) {
	r, err := New(Config{Sink: SinkFunc(func([]Observation) {}), Tokens: map[string][]string{"api": {testToken}}, QueueSize: 1 << 16,
		Directives: func(string, string) wire.Directive { return wire.Directive{Interval: 10 * time.Second} }})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-r.Ready()
	defer func() { cancel(); <-done }()

	serve := func(h http.Handler) (string, func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: h}
		go srv.Serve(ln)
		return "http://" + ln.Addr().String() + wire.BeatPath, func() { srv.Close() }
	}
	beatURL, stopBeat := serve(r.Handler())
	defer stopBeat()
	bareURL, stopBare := serve(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer stopBare()

	const workers = 4
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	var seqBase atomic.Uint64
	measure := func(url string, n int) time.Duration {
		var wg sync.WaitGroup
		var next atomic.Int64
		start := time.Now()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				inst := "api-" + strconv.Itoa(w)
				body := make([]byte, 0, 256)
				for next.Add(1) <= int64(n) {
					seq := seqBase.Add(1)
					body = append(body[:0], `{"service":"api","instance":"`...)
					body = append(body, inst...)
					body = append(body, `","epoch":"7","seq":`...)
					body = strconv.AppendUint(body, seq, 10)
					body = append(body, `,"sent_at_ns":"1000","status":"healthy","interval_ms":10000}`...)
					req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+testToken)
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 && resp.StatusCode != 204 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	n := b.N
	measure(bareURL, min(n, 1000)) // warm both connection pools
	measure(beatURL, min(n, 1000))
	b.ResetTimer()
	// Interleaved rounds, best of each side: the machine is shared.
	bare, beat := time.Duration(1<<62), time.Duration(1<<62)
	for range 3 {
		bare = min(bare, measure(bareURL, n))
		beat = min(beat, measure(beatURL, n))
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/bare.Seconds(), "bare-req/s")
	b.ReportMetric(float64(n)/beat.Seconds(), "beats/s")
	b.ReportMetric(bare.Seconds()/beat.Seconds(), "x-vs-baseline")
	b.ReportMetric(0, "ns/op")
	if st := r.Stats(); st.Accepted[wire.HTTP] < uint64(3*n) {
		b.Fatalf("accepted %d of %d", st.Accepted[wire.HTTP], n)
	}
}
