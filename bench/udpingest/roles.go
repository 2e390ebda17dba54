package udpingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/fb4b1dcc/pulse/bench/internal/child"
	"github.com/fb4b1dcc/pulse/bench/internal/sysinfo"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// Role names.
const (
	RecvRole  = "udp-recv"
	BlastRole = "udp-blast"
)

// Service and Secret are what the blasted beats are signed for.
const (
	Service = "blast"
	Secret  = "udp-ingest-bench-secret-0123456789"
)

// Readers is the reader goroutine count of every receiver (the Receiver's
// default on this machine: min(GOMAXPROCS, 4)); Batch the read batch.
const Batch = 256

// EchoLen is the reply size of the raw-echo receiver: a signed ACK's.
const EchoLen = 64

type recvCmd struct {
	Mode string `json:"mode,omitempty"` // raw, readfrom, ingest: bind and start
	Mark bool   `json:"mark,omitempty"` // reset counters
	Stop bool   `json:"stop,omitempty"` // stop and report
}

// RecvResult is one receiver's measurement.
type RecvResult struct {
	Mode    string
	Count   int64   // packets counted (ingest: observations delivered to the sink)
	Secs    float64 // first to last counted packet
	Mallocs uint64
	CPU     float64
	Drops   map[string]uint64
	Acks    uint64
	Readers int
}

// counter timestamps the first and last batch it sees.
type counter struct {
	n           atomic.Int64
	first, last atomic.Int64 // unix nanos
}

func (c *counter) add(k int) {
	if k <= 0 {
		return
	}
	now := time.Now().UnixNano()
	c.first.CompareAndSwap(0, now)
	c.last.Store(now)
	c.n.Add(int64(k))
}

func (c *counter) reset() {
	c.n.Store(0)
	c.first.Store(0)
	c.last.Store(0)
}

// RecvMain is the receiving child.
func RecvMain(ctx context.Context, c *child.Conn) (any, error) {
	readers := min(runtime.GOMAXPROCS(0), 4)
	var (
		cnt    counter
		stop   func()
		recv   *ingest.Receiver
		ms0    runtime.MemStats
		cpu0   time.Duration
		mode   string
		ackErr error
	)
	for raw := range c.Commands() {
		var cmd recvCmd
		if err := json.Unmarshal(raw, &cmd); err != nil {
			return nil, err
		}
		switch {
		case cmd.Mode != "":
			mode = cmd.Mode
			cnt.reset()
			ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				return nil, err
			}
			_ = ln.SetReadBuffer(4 << 20)
			var wg sync.WaitGroup
			switch mode {
			case "raw":
				for range readers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						pc := ipv4.NewPacketConn(ln)
						msgs := make([]ipv4.Message, Batch)
						for i := range msgs {
							msgs[i].Buffers = [][]byte{make([]byte, 2048)}
						}
						for {
							k, err := pc.ReadBatch(msgs, 0)
							if err != nil {
								return
							}
							cnt.add(k)
						}
					}()
				}
				stop = func() { ln.Close(); wg.Wait() }
			case "raw-echo":
				// The physical limit for an acknowledged protocol: read a
				// batch, write one ACK-sized reply per datagram back to its
				// sender with one sendmmsg, nothing else.
				for range readers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						pc := ipv4.NewPacketConn(ln)
						msgs := make([]ipv4.Message, Batch)
						replies := make([]ipv4.Message, Batch)
						reply := make([]byte, EchoLen)
						for i := range msgs {
							msgs[i].Buffers = [][]byte{make([]byte, 2048)}
							replies[i].Buffers = [][]byte{reply}
						}
						for {
							k, err := pc.ReadBatch(msgs, 0)
							if err != nil {
								return
							}
							for i := range k {
								replies[i].Addr = msgs[i].Addr
							}
							for sent := 0; sent < k; {
								m, err := pc.WriteBatch(replies[sent:k], 0)
								if err != nil {
									break // a full buffer: the reply is lost, as an ACK would be
								}
								sent += m
							}
							cnt.add(k)
						}
					}()
				}
				stop = func() { ln.Close(); wg.Wait() }
			case "readfrom":
				for range readers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						buf := make([]byte, 2048)
						for {
							_, _, err := ln.ReadFromUDPAddrPort(buf)
							if err != nil {
								return
							}
							cnt.add(1)
						}
					}()
				}
				stop = func() { ln.Close(); wg.Wait() }
			case "ingest":
				k, err := wire.NewKey(1, []byte(Secret))
				if err != nil {
					return nil, err
				}
				ring, err := wire.NewKeyring(map[string][]*wire.Key{Service: {k}})
				if err != nil {
					return nil, err
				}
				recv, err = ingest.New(ingest.Config{UDPConn: ln, Keys: ring, Readers: readers, BatchSize: Batch,
					Sink:       ingest.SinkFunc(func(obs []ingest.Observation) { cnt.add(len(obs)) }),
					Directives: func(string, string) wire.Directive { return wire.Directive{Interval: time.Second} }})
				if err != nil {
					return nil, err
				}
				rctx, cancel := context.WithCancel(ctx)
				wg.Add(1)
				go func() { defer wg.Done(); ackErr = recv.Run(rctx) }()
				<-recv.Ready()
				stop = func() { cancel(); wg.Wait() }
			default:
				return nil, fmt.Errorf("udpingest: unknown mode %q", mode)
			}
			if err := c.Send(map[string]string{"addr": ln.LocalAddr().String()}); err != nil {
				return nil, err
			}
		case cmd.Mark:
			cnt.reset()
			runtime.GC()
			runtime.ReadMemStats(&ms0)
			cpu0 = sysinfo.SelfCPU()
			if err := c.Send(map[string]bool{"ok": true}); err != nil {
				return nil, err
			}
		case cmd.Stop:
			if stop == nil {
				return nil, errors.New("udpingest: stop before start")
			}
			var ms1 runtime.MemStats
			runtime.ReadMemStats(&ms1)
			cpu1 := sysinfo.SelfCPU()
			stop()
			res := RecvResult{Mode: mode, Count: cnt.n.Load(), Mallocs: ms1.Mallocs - ms0.Mallocs, CPU: (cpu1 - cpu0).Seconds(), Readers: readers}
			if f, l := cnt.first.Load(), cnt.last.Load(); l > f {
				res.Secs = float64(l-f) / 1e9
			}
			if recv != nil {
				st := recv.Stats()
				res.Drops = map[string]uint64{}
				for _, r := range ingest.DropReasons() {
					if st.Drops(r) > 0 {
						res.Drops[r.String()] = st.Drops(r)
					}
				}
				res.Acks = st.AcksSent
				recv = nil
			}
			if ackErr != nil && !errors.Is(ackErr, context.Canceled) {
				return nil, ackErr
			}
			stop = nil
			if err := c.Send(res); err != nil {
				return nil, err
			}
		}
	}
	if stop != nil {
		stop()
	}
	return nil, nil
}

// BlastInput sizes the blaster's pool of distinct beats.
type BlastInput struct {
	Instances, Seqs int
}

type blastCmd struct {
	Addr  string `json:"addr"`
	Warm  bool   `json:"warm,omitempty"`  // send each instance's first beat once
	Count int    `json:"count,omitempty"` // send this many from the pool (fresh beats)
}

// BlastResult is what one blast sent.
type BlastResult struct {
	Sent int
	Secs float64
}

// BlastMain is the sending child: it signs Instances × Seqs distinct beats
// up front, then sends them with sendmmsg (64 per call) as fast as it can.
func BlastMain(ctx context.Context, c *child.Conn) (any, error) {
	var in BlastInput
	if err := c.Input(&in); err != nil {
		return nil, err
	}
	k, err := wire.NewKey(1, []byte(Secret))
	if err != nil {
		return nil, err
	}
	insts := make([][]byte, in.Instances)
	for i := range insts {
		insts[i] = fmt.Appendf(nil, "inst-%06d", i)
	}
	// Round-robin order: beat s of every instance, then s+1, … so that
	// every packet is fresh the first time the pool is sent in order.
	pool := make([][]byte, 0, in.Instances*in.Seqs)
	epoch := uint64(time.Now().UnixNano())
	for s := 1; s <= in.Seqs; s++ {
		for i := range insts {
			b := wire.Beat{Status: status.Healthy, Interval: time.Second, Epoch: epoch, Seq: uint64(s),
				SentAt: time.Duration(s) * time.Second, Service: []byte(Service), Instance: insts[i]}
			p, err := wire.AppendBeat(nil, &b, k)
			if err != nil {
				return nil, err
			}
			pool = append(pool, p)
		}
	}
	if err := c.Send(map[string]int{"pool": len(pool)}); err != nil {
		return nil, err
	}
	for raw := range c.Commands() {
		var cmd blastCmd
		if err := json.Unmarshal(raw, &cmd); err != nil {
			return nil, err
		}
		ua, err := net.ResolveUDPAddr("udp", cmd.Addr)
		if err != nil {
			return nil, err
		}
		conn, err := net.DialUDP("udp", nil, ua)
		if err != nil {
			return nil, err
		}
		_ = conn.SetWriteBuffer(4 << 20)
		_ = conn.SetReadBuffer(4096) // ACKs are not read: the kernel drops them
		pkts := pool[in.Instances:]
		n := min(cmd.Count, len(pkts))
		if cmd.Warm {
			pkts, n = pool[:in.Instances], in.Instances
		}
		t0 := time.Now()
		sent := blast(conn, pkts, n)
		res := BlastResult{Sent: sent, Secs: time.Since(t0).Seconds()}
		conn.Close()
		if err := c.Send(res); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

func blast(conn *net.UDPConn, pkts [][]byte, n int) int {
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
			continue // ECONNREFUSED from a stale ICMP, or a full buffer: go on
		}
		sent += m
	}
	return sent
}
