package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/fb4b1dcc/pulse/internal/backoff"
	"github.com/fb4b1dcc/pulse/store"
)

// syncState is what the sync loop knows of etcd. Only the sync loop
// touches it.
type syncState struct {
	rev     int64
	members map[string]Member // the others, as announced
	latest  map[store.Key]stateRecord
	pending bool // members changed since the view was applied
}

// health records when the session was lost and recovered (monotonic).
type health struct {
	mu          sync.Mutex
	lostAt      time.Time
	recoveredAt time.Time
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// rateLog logs a repeating failure once per state change, then once a
// minute: an etcd outage must be visible without flooding the log.
type rateLog struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (r *rateLog) allow(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]time.Time{}
	}
	if t, ok := r.last[key]; ok && time.Since(t) < time.Minute {
		return false
	}
	r.last[key] = time.Now()
	return true
}

func (r *rateLog) reset(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.last, key)
}

// syncLoop joins the cluster, then follows /pulse/v1/ in etcd: membership
// (with the settle and the freeze), published states (mirrored into the
// monitor) and the configuration. A failed watch is followed by a fresh
// list, so a compaction or a long outage loses nothing.
func (n *Node) syncLoop(ctx context.Context) {
	s := &syncState{members: map[string]Member{}, latest: map[store.Key]stateRecord{}}
	bo := backoff.New(backoff.Policy{Initial: 200 * time.Millisecond, Max: 2 * time.Second})
	joined := false
	for ctx.Err() == nil {
		var err error
		if !joined {
			err = n.join(ctx, s)
			joined = err == nil
		} else {
			err = n.relist(ctx, s)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if n.limiter.allow("sync") {
				n.log.Warn("cannot read the cluster state from etcd; ownership stays as it was, retrying", "err", err)
			}
			sleep(ctx, bo.Next())
			continue
		}
		n.limiter.reset("sync")
		bo.Reset()
		err = n.watch(ctx, s)
		if ctx.Err() != nil {
			return
		}
		n.log.Info("the etcd watch ended; listing again", "err", err)
		sleep(ctx, bo.Next())
	}
}

// list reads everything under the prefix.
func (n *Node) list(ctx context.Context) (*clientv3.GetResponse, error) {
	cctx, cancel := n.etcdCtx(ctx)
	defer cancel()
	return n.cli.Load().Get(cctx, Prefix, clientv3.WithPrefix())
}

// join is the hand-off of a node that (re)enters the cluster: mirror the
// state the current owners published while not owning anything, announce
// itself, then take its share over in grace from those states.
func (n *Node) join(ctx context.Context, s *syncState) error {
	cli := n.cli.Load()
	if n.lease.Load() == 0 {
		cctx, cancel := n.etcdCtx(ctx)
		g, err := cli.Grant(cctx, int64((n.cfg.LeaseTTL+time.Second-1)/time.Second))
		cancel()
		if err != nil {
			return fmt.Errorf("granting a lease: %w", err)
		}
		n.lease.Store(int64(g.ID))
	}
	resp, err := n.list(ctx)
	if err != nil {
		return err
	}
	n.load(ctx, s, resp)
	// Hand-off: see the fleet through the current owners' eyes first.
	if len(s.members) > 0 {
		n.ring.Store(NewRing(n.others(s)))
		n.mon.Reown()
		n.remirror(s)
	}
	if err := n.announce(ctx); err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			n.lease.Store(0) // it expired while joining failed: grant anew
		}
		return err
	}
	n.healthy.Store(true)
	n.applyView(s, "joined")
	n.pub.markAll()
	n.cfgSync.writeStatus(ctx)
	n.syncOnce.Do(func() { close(n.synced) })
	n.log.Info("joined the cluster", "members", memberIDs(n.ring.Load()), "zone", n.cfg.Zone, "lease_ttl", n.cfg.LeaseTTL)
	return nil
}

// announce writes this node's member key under its lease.
func (n *Node) announce(ctx context.Context) error {
	b, err := json.Marshal(n.self)
	if err != nil {
		return err
	}
	cctx, cancel := n.etcdCtx(ctx)
	defer cancel()
	if _, err := n.cli.Load().Put(cctx, MembersKey+n.cfg.NodeID, string(b), clientv3.WithLease(clientv3.LeaseID(n.lease.Load()))); err != nil {
		return fmt.Errorf("announcing %s: %w", n.cfg.NodeID, err)
	}
	return nil
}

// relist re-reads everything after a watch ended.
func (n *Node) relist(ctx context.Context, s *syncState) error {
	resp, err := n.list(ctx)
	if err != nil {
		return err
	}
	n.load(ctx, s, resp)
	n.remirror(s)
	return nil
}

// load replaces the sync state with a listing.
func (n *Node) load(ctx context.Context, s *syncState, resp *clientv3.GetResponse) {
	s.rev = resp.Header.Revision
	clear(s.members)
	clear(s.latest)
	s.pending = true
	var cfg []byte
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		switch {
		case strings.HasPrefix(key, MembersKey):
			n.putMember(s, key, kv.Value)
		case strings.HasPrefix(key, StateKey):
			if k, rec, err := decodeRecord(key, kv.Value); err == nil {
				s.latest[k] = rec
			} else {
				n.stats.malformed.Add(1)
			}
		case key == ConfigKey:
			cfg = kv.Value
		}
	}
	if cfg != nil {
		n.cfgSync.fromEtcd(ctx, cfg)
	}
}

func (n *Node) putMember(s *syncState, key string, v []byte) {
	id := strings.TrimPrefix(key, MembersKey)
	if id == n.cfg.NodeID {
		return // this node's own entry is n.self
	}
	var m Member
	if err := json.Unmarshal(v, &m); err != nil || m.ID != id {
		n.stats.malformed.Add(1)
		if n.limiter.allow("member:" + id) {
			n.log.Warn("ignoring a malformed member entry in etcd", "key", key, "err", err)
		}
		return
	}
	s.members[id] = m
	s.pending = true
}

func (n *Node) others(s *syncState) []Member {
	out := make([]Member, 0, len(s.members))
	for _, m := range s.members {
		out = append(out, m)
	}
	return out
}

// watch follows the prefix from s.rev+1 until the watch fails or ctx
// ends, applying membership changes once they settle.
func (n *Node) watch(ctx context.Context, s *syncState) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := n.cli.Load().Watch(wctx, Prefix, clientv3.WithPrefix(), clientv3.WithRev(s.rev+1))
	settle := time.NewTimer(n.cfg.Settle)
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case resp, ok := <-wch:
			if !ok {
				return errors.New("watch channel closed")
			}
			if err := resp.Err(); err != nil {
				return err
			}
			if n.handle(ctx, s, resp.Events) {
				settle.Reset(n.cfg.Settle)
			}
			s.rev = resp.Header.Revision
		case <-settle.C:
			n.maybeApplyView(s, settle)
		case <-n.sessionCh:
			n.maybeApplyView(s, settle)
		}
	}
}

// handle applies watched events; it reports whether membership changed.
func (n *Node) handle(ctx context.Context, s *syncState, events []*clientv3.Event) (membersChanged bool) {
	var batch []store.Instance
	var reclaim []store.Key
	remirror := false
	for _, ev := range events {
		key := string(ev.Kv.Key)
		put := ev.Type == mvccpb.PUT
		switch {
		case strings.HasPrefix(key, MembersKey):
			if put {
				n.putMember(s, key, ev.Kv.Value)
			} else if id := strings.TrimPrefix(key, MembersKey); id != n.cfg.NodeID {
				delete(s.members, id)
				s.pending = true
			}
			membersChanged = true
		case strings.HasPrefix(key, StateKey):
			if !put {
				// A deleted state is an expired lease (its owner died) or
				// a tombstone's clean-up: the mirror keeps the last state
				// until the new owner publishes.
				if k, ok := parseStateKey(key); ok {
					delete(s.latest, k)
				}
				continue
			}
			k, rec, err := decodeRecord(key, ev.Kv.Value)
			if err != nil {
				n.stats.malformed.Add(1)
				if n.limiter.allow("state") {
					n.log.Warn("ignoring a malformed state in etcd", "key", key, "err", err)
				}
				continue
			}
			s.latest[k] = rec
			if n.eligible(k, rec) {
				batch = append(batch, rec.instance())
			} else if n.claimed(k, rec) {
				reclaim = append(reclaim, k)
			}
		case key == ConfigKey:
			if put {
				n.cfgSync.fromEtcd(ctx, ev.Kv.Value)
				remirror = true
			} else {
				n.log.Warn("the configuration was deleted from etcd; the running configuration stays")
			}
		}
	}
	if len(batch) > 0 {
		n.mon.Mirror(batch)
		n.stats.mirrored.Add(uint64(len(batch)))
	}
	if remirror {
		n.remirror(s) // services the new configuration added
	}
	n.pub.mark(reclaim)
	return membersChanged
}

// claimed reports whether another node wrote the state of an instance
// this node owns (it had not yet seen the view change that moved it): the
// owner writes its own state over it, so etcd converges on the owner's.
func (n *Node) claimed(k store.Key, rec stateRecord) bool {
	return rec.Owner != n.cfg.NodeID && n.Owns(k.Service, k.Instance)
}

// eligible reports whether a published state is authoritative in this
// node's view: its owner is another node and owns the instance now. A
// late write by a node that has just lost the instance is ignored.
func (n *Node) eligible(k store.Key, rec stateRecord) bool {
	return rec.Owner != n.cfg.NodeID && n.ring.Load().Owner(k.Service, k.Instance) == rec.Owner
}

// remirror applies every authoritative state (after the view changed),
// and reclaims the records of owned instances others wrote.
func (n *Node) remirror(s *syncState) {
	var batch []store.Instance
	var reclaim []store.Key
	for k, rec := range s.latest {
		if n.eligible(k, rec) {
			batch = append(batch, rec.instance())
		} else if n.claimed(k, rec) {
			reclaim = append(reclaim, k)
		}
	}
	n.pub.mark(reclaim)
	if len(batch) > 0 {
		n.mon.Mirror(batch)
		n.stats.mirrored.Add(uint64(len(batch)))
	}
}

// maybeApplyView applies a settled membership change unless ownership is
// frozen: while the session with etcd is down (the view may be stale or
// partial), and for Hold after it recovers, so peers that lost their
// lease in the same outage have announced themselves again.
func (n *Node) maybeApplyView(s *syncState, settle *time.Timer) {
	if !s.pending || !n.healthy.Load() {
		return
	}
	n.h.mu.Lock()
	until := n.h.recoveredAt.Add(n.cfg.Hold)
	frozen := !n.h.recoveredAt.IsZero() && time.Now().Before(until)
	n.h.mu.Unlock()
	if frozen {
		settle.Reset(time.Until(until))
		return
	}
	n.applyView(s, "membership changed")
}

// applyView makes ownership follow the members etcd lists (and this node).
func (n *Node) applyView(s *syncState, why string) {
	s.pending = false
	r := NewRing(append(n.others(s), n.self))
	old := n.ring.Load()
	if r.Same(old) {
		return
	}
	n.ring.Store(r)
	gained := n.mon.Reown()
	n.pub.mark(gained)
	n.peers.retain(r)
	n.remirror(s)
	n.stats.viewChanges.Add(1)
	n.stats.lastView.Store(time.Now().UnixNano())
	n.cfgSync.ringChanged()
	n.log.Info("cluster ownership follows a new view", "why", why, "members", memberIDs(r), "was", memberIDs(old), "taken_over", len(gained))
}

func memberIDs(r *Ring) []string {
	out := make([]string, 0, r.Len())
	for _, m := range r.members {
		out = append(out, m.ID)
	}
	slices.Sort(out)
	return out
}

// sessionLoop keeps the lease alive. When keep-alives stop being answered
// the session is unhealthy (ownership freezes); once etcd answers again
// the old lease is resumed if it survived (etcd restarted) or a new one is
// granted and everything this node owns is published under it (its leases
// expired while etcd could not hear it).
func (n *Node) sessionLoop(ctx context.Context) {
	select {
	case <-n.synced:
	case <-ctx.Done():
		return
	}
	cli := n.cli.Load()
	for ctx.Err() == nil {
		id := clientv3.LeaseID(n.lease.Load())
		kctx, kcancel := context.WithCancel(ctx)
		ch, err := cli.KeepAlive(kctx, id)
		if err == nil {
			for range ch {
				n.stats.keepalives.Add(1)
			}
		}
		kcancel()
		if ctx.Err() != nil {
			return
		}
		n.setHealthy(false)
		n.log.Warn("etcd stopped answering this node's keep-alives; ownership is frozen and the node keeps judging its shard", "lease_ttl", n.cfg.LeaseTTL, "err", err)
		if !n.recoverSession(ctx, id) {
			return
		}
	}
}

// recoverSession retries until etcd answers; it reports false when ctx
// ended.
func (n *Node) recoverSession(ctx context.Context, id clientv3.LeaseID) bool {
	cli := n.cli.Load()
	bo := backoff.New(backoff.Policy{Initial: 200 * time.Millisecond, Max: 2 * time.Second})
	for {
		// Short attempts: one stuck on a connection that died in the
		// outage must not delay noticing that etcd is back.
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.KeepAliveOnce(cctx, id)
		cancel()
		if ctx.Err() != nil {
			return false
		}
		switch {
		case err == nil:
			n.setHealthy(true)
			n.log.Info("etcd answers again; the lease survived the outage")
			n.pub.kickNow()
			return true
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			if err := n.reregister(ctx); err != nil {
				if n.limiter.allow("reregister") {
					n.log.Warn("re-registering with etcd failed; retrying", "err", err)
				}
				break
			}
			n.limiter.reset("reregister")
			n.setHealthy(true)
			n.log.Info("etcd answers again; the lease had expired, so the node announced itself again and republishes its shard")
			return true
		}
		if !sleep(ctx, bo.Next()) {
			return false
		}
	}
}

// reregister grants a new lease and re-announces; every claim made under
// the old lease is gone, so everything owned is published again.
func (n *Node) reregister(ctx context.Context) error {
	cctx, cancel := n.etcdCtx(ctx)
	g, err := n.cli.Load().Grant(cctx, int64((n.cfg.LeaseTTL+time.Second-1)/time.Second))
	cancel()
	if err != nil {
		return err
	}
	n.lease.Store(int64(g.ID))
	if err := n.announce(ctx); err != nil {
		return err
	}
	n.stats.reregistrations.Add(1)
	n.pub.markAll()
	n.cfgSync.writeStatus(ctx)
	return nil
}

func (n *Node) setHealthy(ok bool) {
	if n.healthy.Swap(ok) == ok {
		return
	}
	n.h.mu.Lock()
	if ok {
		n.h.recoveredAt = time.Now()
	} else {
		n.h.lostAt = time.Now()
	}
	n.h.mu.Unlock()
	n.notifySession()
}
