package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fb4b1dcc/pulse/internal/backoff"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/store"
)

// maxTxnOps stays within etcd's default --max-txn-ops (128).
const maxTxnOps = 128

// tombstoneTTL is how long a "left" record stays before it is deleted:
// long enough for every watcher to see it.
const tombstoneTTL = time.Minute

// publisher writes the state of the instances this node owns to etcd:
// after each transition (never per beat), after a takeover, and all of
// them under a new lease. Writes are batched every PublishInterval into
// transactions, latest state wins, and a failed write is retried with
// back-off (etcd unreachable: the dirty set waits, bounded by the
// instances).
type publisher struct {
	n    *Node
	kick chan struct{}

	mu    sync.Mutex
	dirty map[store.Key]struct{}
	all   bool
	tombs []tombstone
}

type tombstone struct {
	key string
	rev int64
	at  time.Time
}

func newPublisher(n *Node) *publisher {
	return &publisher{n: n, kick: make(chan struct{}, 1), dirty: map[store.Key]struct{}{}}
}

func (p *publisher) lock()   { p.mu.Lock() }
func (p *publisher) unlock() { p.mu.Unlock() }

// mark queues instances for publication.
func (p *publisher) mark(keys []store.Key) {
	if len(keys) == 0 {
		return
	}
	p.lock()
	for _, k := range keys {
		p.dirty[k] = struct{}{}
	}
	p.unlock()
}

// markAll queues every owned instance (a new lease, a join).
func (p *publisher) markAll() {
	p.lock()
	p.all = true
	p.unlock()
	p.kickNow()
}

func (p *publisher) kickNow() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// run follows the monitor's transitions and flushes them.
func (p *publisher) run(ctx context.Context) {
	n := p.n
	w := n.mon.Watch(n.mon.LastSeq())
	defer w.Close()
	wc := w.C()
	tick := time.NewTicker(n.cfg.PublishInterval)
	defer tick.Stop()
	bo := backoff.New(backoff.Policy{Initial: 200 * time.Millisecond, Max: 2 * time.Second})
	var retryAt time.Time
	buf := make([]monitor.Event, 0, 1024)
	var keys []store.Key
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-wc:
			if !ok {
				wc = nil // the monitor stopped; Run ends with ctx
				continue
			}
			for {
				var err error
				buf, err = w.Next(buf[:0], cap(buf))
				if errors.Is(err, monitor.ErrGap) {
					// Transitions were lost to the ring buffer: publish all.
					p.markAll()
					continue
				}
				keys = keys[:0]
				for _, e := range buf {
					if e.Instance != "" && e.Source != "peer" {
						keys = append(keys, store.Key{Service: e.Service, Instance: e.Instance})
					}
				}
				p.mark(keys)
				if len(buf) < cap(buf) || err != nil {
					break
				}
			}
			continue
		case <-tick.C:
		case <-p.kick:
		}
		select {
		case <-n.synced:
		default:
			continue // not joined: nothing may be claimed yet
		}
		if time.Now().Before(retryAt) {
			continue
		}
		if err := p.flush(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			n.stats.publishErrors.Add(1)
			if n.limiter.allow("publish") {
				n.log.Warn("publishing instance states to etcd failed; they wait and are retried", "err", err)
			}
			retryAt = time.Now().Add(bo.Next())
			continue
		}
		n.limiter.reset("publish")
		bo.Reset()
		retryAt = time.Time{}
	}
}

// flush writes the dirty states; on failure they stay dirty.
func (p *publisher) flush(ctx context.Context) error {
	n := p.n
	if err := p.sweepTombstones(ctx); err != nil {
		return err
	}
	p.lock()
	all := p.all
	if !all && len(p.dirty) == 0 {
		p.unlock()
		return nil
	}
	dirty := p.dirty
	p.dirty, p.all = map[store.Key]struct{}{}, false
	p.unlock()
	lease := clientv3.LeaseID(n.lease.Load())
	if lease == 0 {
		p.restore(dirty, all)
		return errors.New("no lease yet")
	}

	var snaps []store.Instance
	if all {
		snaps = n.mon.Snapshots(nil)
	}
	keys := make([]store.Key, 0, len(dirty))
	for k := range dirty {
		if n.Owns(k.Service, k.Instance) {
			keys = append(keys, k)
		}
	}
	snaps = append(snaps, n.mon.Snapshots(keys)...)
	found := make(map[store.Key]bool, len(snaps))
	ops := make([]clientv3.Op, 0, len(snaps))
	tombKeys := map[string]bool{}
	for _, si := range snaps {
		k := store.Key{Service: si.Service, Instance: si.Instance}
		if found[k] || !n.Owns(k.Service, k.Instance) {
			continue
		}
		found[k] = true
		b, err := json.Marshal(recordOf(n.cfg.NodeID, si))
		if err != nil {
			continue
		}
		ops = append(ops, clientv3.OpPut(stateKey(k.Service, k.Instance), string(b), clientv3.WithLease(lease)))
	}
	for _, k := range keys {
		if found[k] {
			continue
		}
		// Gone from the monitor: it left. Say so, then clean up later.
		b, _ := json.Marshal(stateRecord{Owner: n.cfg.NodeID, Service: k.Service, Instance: k.Instance,
			State: monitor.Left.String(), Reason: "left", UpdatedAt: time.Now().UTC()})
		key := stateKey(k.Service, k.Instance)
		ops = append(ops, clientv3.OpPut(key, string(b), clientv3.WithLease(lease)))
		tombKeys[key] = true
	}
	cli := n.cli.Load()
	began := time.Now()
	defer func() {
		n.log.Debug("published instance states", "records", len(ops), "took", time.Since(began))
	}()
	for start := 0; start < len(ops); start += maxTxnOps {
		chunk := ops[start:min(start+maxTxnOps, len(ops))]
		cctx, cancel := n.etcdCtx(ctx)
		resp, err := cli.Txn(cctx).Then(chunk...).Commit()
		cancel()
		if err != nil {
			// Everything not yet written waits for the next attempt.
			p.restore(dirty, all)
			return err
		}
		n.stats.publishTxns.Add(1)
		n.stats.published.Add(uint64(len(chunk)))
		for _, op := range chunk {
			if k := string(op.KeyBytes()); tombKeys[k] {
				p.tombs = append(p.tombs, tombstone{key: k, rev: resp.Header.Revision, at: time.Now()})
			}
		}
	}
	return nil
}

// restore puts a failed batch back, under anything marked since.
func (p *publisher) restore(dirty map[store.Key]struct{}, all bool) {
	p.lock()
	for k := range dirty {
		p.dirty[k] = struct{}{}
	}
	p.all = p.all || all
	p.unlock()
}

// sweepTombstones deletes "left" records that have been seen, unless
// something newer was written to the key since.
func (p *publisher) sweepTombstones(ctx context.Context) error {
	kept := p.tombs[:0]
	for i, t := range p.tombs {
		if time.Since(t.at) < tombstoneTTL {
			kept = append(kept, t)
			continue
		}
		cctx, cancel := p.n.etcdCtx(ctx)
		_, err := p.n.cli.Load().Txn(cctx).If(clientv3.Compare(clientv3.ModRevision(t.key), "=", t.rev)).
			Then(clientv3.OpDelete(t.key)).Commit()
		cancel()
		if err != nil {
			p.tombs = append(kept, p.tombs[i:]...)
			return err
		}
	}
	p.tombs = kept
	return nil
}
