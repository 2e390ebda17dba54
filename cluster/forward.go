package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/fb4b1dcc/pulse/ingest"
	pulsev1 "github.com/fb4b1dcc/pulse/proto/pulse/v1"
)

// forwardBatch is the most beats one Forward call carries; a queue that
// reaches it is sent at once instead of at the next tick.
const forwardBatch = 1024

// forwarder hands beats that reached this node to their owners: queued
// per owner, sent every ForwardInterval (or when a batch fills) in one
// unary call, at most one call in flight per peer. Beats are not retried:
// the next beat is due within an interval, and a late one is worth less
// than a fresh one. A full queue (a peer that cannot keep up) drops the
// newest beats and counts them.
type forwarder struct {
	n    *Node
	kick chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	queues map[string]*fwdQueue
}

type fwdQueue struct {
	member   Member
	beats    []ingest.Observation
	inFlight bool
}

func newForwarder(n *Node) *forwarder {
	return &forwarder{n: n, kick: make(chan struct{}, 1), queues: map[string]*fwdQueue{}}
}

// forward is the monitor's Forward hook: it runs on ingest's goroutine,
// outside the monitor's lock, and only queues.
func (f *forwarder) forward(obs []ingest.Observation) {
	n := f.n
	r := n.ring.Load()
	var mine []ingest.Observation
	full := false
	f.mu.Lock()
	for i := range obs {
		idx := r.ownerIndex(keyHash(obs[i].Service, obs[i].Instance))
		if idx < 0 {
			n.stats.forwardDropped.Add(1)
			continue
		}
		m := r.members[idx]
		if m.ID == n.cfg.NodeID {
			// The view changed between the monitor's check and this one.
			mine = append(mine, obs[i])
			continue
		}
		q := f.queues[m.ID]
		if q == nil {
			q = &fwdQueue{}
			f.queues[m.ID] = q
		}
		q.member = m
		if len(q.beats) >= n.cfg.ForwardQueue {
			n.stats.forwardDropped.Add(1)
			continue
		}
		q.beats = append(q.beats, obs[i])
		full = full || len(q.beats) >= forwardBatch
	}
	f.mu.Unlock()
	if full {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
	if len(mine) > 0 {
		n.mon.ObserveBatch(mine)
	}
}

// run sends queued beats until ctx ends; beats still queued then are
// dropped (the node is stopping).
func (f *forwarder) run(ctx context.Context) {
	defer f.wg.Wait()
	t := time.NewTicker(f.n.cfg.ForwardInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-f.kick:
		}
		f.flush(ctx)
	}
}

func (f *forwarder) flush(ctx context.Context) {
	n := f.n
	r := n.ring.Load()
	var reroute []ingest.Observation
	f.mu.Lock()
	for id, q := range f.queues {
		if len(q.beats) == 0 {
			if !q.inFlight && !r.Has(id) {
				delete(f.queues, id)
			}
			continue
		}
		if !r.Has(id) {
			// The owner left the view: its beats go to the new owners.
			reroute = append(reroute, q.beats...)
			q.beats = nil
			continue
		}
		if q.inFlight {
			continue
		}
		for len(q.beats) > 0 && !q.inFlight {
			batch := q.beats[:min(len(q.beats), forwardBatch)]
			rest := q.beats[len(batch):]
			q.beats = nil
			if len(rest) > 0 {
				q.beats = append(make([]ingest.Observation, 0, len(rest)), rest...)
			}
			q.inFlight = true
			f.wg.Add(1)
			go f.send(ctx, q, q.member, batch)
		}
	}
	f.mu.Unlock()
	if len(reroute) > 0 {
		f.forward(reroute)
	}
}

// send makes one Forward call.
func (f *forwarder) send(ctx context.Context, q *fwdQueue, m Member, beats []ingest.Observation) {
	defer f.wg.Done()
	n := f.n
	defer func() {
		f.mu.Lock()
		q.inFlight = false
		f.mu.Unlock()
	}()
	client, err := n.peers.client(m)
	if err == nil {
		req := &pulsev1.ForwardRequest{FromNode: n.cfg.NodeID, Beats: make([]*pulsev1.ForwardedBeat, len(beats))}
		now := time.Now()
		for i := range beats {
			req.Beats[i] = encodeBeat(&beats[i], now)
		}
		cctx, cancel := context.WithTimeout(n.peerCtx(ctx), 2*time.Second)
		var resp *pulsev1.ForwardResponse
		resp, err = client.Forward(cctx, req)
		cancel()
		if err == nil {
			n.stats.forwarded.Add(uint64(resp.GetAccepted()))
			n.stats.forwardMisrouted.Add(uint64(resp.GetMisrouted()))
			n.limiter.reset("forward:" + m.ID)
			return
		}
	}
	if ctx.Err() != nil {
		return
	}
	n.stats.forwardErrors.Add(1)
	n.stats.forwardDropped.Add(uint64(len(beats)))
	if n.limiter.allow("forward:" + m.ID) {
		n.log.Warn("forwarding beats to their owner failed; they are dropped (the next beats follow)", "peer", m.ID,
			"peer_addr", m.GRPC, "beats", len(beats), "err", err)
	}
}
