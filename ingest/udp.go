package ingest

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/fb4b1dcc/pulse/clock"
	"github.com/fb4b1dcc/pulse/wire"
)

// udpReader is one reader goroutine's reusable state.
type udpReader struct {
	bc   batchConn
	obs  []Observation
	acks [][]byte
	to   []int
	key  []byte
	l    local
}

// readUDP reads batches until the socket is closed. Per datagram:
// size → decode → key and tag → intern → replay window and queue room →
// observation + ACK. Nothing on this path allocates once an instance is
// known.
func (r *Receiver) readUDP(ctx context.Context, cancel context.CancelCauseFunc, bc batchConn, wg *sync.WaitGroup) {
	defer wg.Done()
	defer func() {
		if p := recover(); p != nil {
			r.c.panics.Add(1)
			cancel(errors.New("ingest: UDP reader panicked; see Stats().Panics"))
		}
	}()
	u := &udpReader{
		bc:   bc,
		obs:  make([]Observation, 0, r.cfg.BatchSize),
		acks: make([][]byte, 0, r.cfg.BatchSize),
		to:   make([]int, 0, r.cfg.BatchSize),
		key:  make([]byte, 0, 2*wire.MaxIDLen+1),
	}
	var pause clock.Timer // created on the first read error, then reused
	for {
		n, err := bc.read()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			r.c.readErrors.Add(1)
			// A persistent error must not spin a core; the socket is
			// still owned by Run, which closes it on stop.
			if pause == nil {
				pause = r.clock.NewTimer(10 * time.Millisecond)
				defer pause.Stop()
			} else {
				pause.Reset(10 * time.Millisecond)
			}
			select {
			case <-ctx.Done():
				return
			case <-pause.C():
			}
			continue
		}
		r.processUDP(u, n)
	}
}

func (r *Receiver) processUDP(u *udpReader, n int) {
	now := r.clock.Now()
	mono := int64(now.Sub(r.origin))
	r.c.readBatches.Add(1)
	r.c.readSizes[bucket(n)].Add(1)
	keys := r.keys.Load()
	room := r.q.reserve(n)
	reserved := room
	u.obs, u.acks, u.to = u.obs[:0], u.acks[:0], u.to[:0]
	var b wire.Beat
	for i := range n {
		data, from, trunc := u.bc.packet(i)
		u.l.received++
		if trunc {
			u.l.dropped[DropOversized]++
			continue
		}
		if err := wire.DecodeBeat(data, &b); err != nil {
			if err == wire.ErrOversized {
				u.l.dropped[DropOversized]++
			} else {
				u.l.dropped[DropMalformed]++
			}
			continue
		}
		k := keys.Lookup(b.Service, b.KeyID)
		if k == nil || !b.Verify(k) {
			u.l.dropped[DropAuth]++
			continue
		}
		u.key = instKey(u.key, b.Service, b.Instance)
		st := r.table.get(u.key, b.Service, b.Instance)
		if st == nil {
			u.l.dropped[DropLimit]++
			continue
		}
		st.lastSeen.Store(mono)
		var code wire.AckCode
		switch judge(st, b.Epoch, b.Seq, &room) {
		case outReplay:
			u.l.dropped[DropReplay]++
			continue
		case outOverflow:
			u.l.dropped[DropOverflow]++
			continue
		case outDuplicate:
			u.l.dropped[DropDuplicate]++
			code = wire.AckDuplicate
		case outAccepted:
			u.l.accepted++
			u.obs = append(u.obs, Observation{
				Service: st.service, Instance: st.instance, Source: Passive, Transport: wire.UDP,
				Epoch: b.Epoch, Seq: b.Seq, SentAt: b.SentAt, ReceivedAt: now, RTT: b.RTT,
				Interval: b.Interval, Status: b.Status, Reason: b.Reason, Attempt: b.Attempt,
				TraceParent: b.Trace, Peer: from,
			})
			r.traceReceive(&u.obs[len(u.obs)-1])
		}
		a := wire.Ack{Code: code, KeyID: b.KeyID, Epoch: b.Epoch, Seq: b.Seq, SentAt: b.SentAt, Directive: r.directive(st)}
		buf, _ := wire.AppendAck(u.bc.ackBuf(len(u.acks)), &a, k, b.Service, b.Instance)
		u.acks = append(u.acks, buf)
		u.to = append(u.to, i)
	}
	// Queue first, then ACK: an ACK promises the beat was taken.
	r.q.commit(u.obs, reserved)
	clear(u.obs) // drop string references held by the reused slice
	if len(u.acks) > 0 && !r.cfg.benchNoAcks {
		sent, err := u.bc.writeAcks(u.acks, u.to)
		u.l.acks += uint64(sent)
		if err != nil {
			r.c.ackErrors.Add(uint64(len(u.acks) - sent))
		}
	}
	r.c.flush(wire.UDP, &u.l)
}
