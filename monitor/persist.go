package monitor

import (
	"context"
	"time"

	"github.com/fb4b1dcc/pulse/detector"
	"github.com/fb4b1dcc/pulse/store"
)

// persistLoop writes events to the store in batches, off the verdict path,
// and saves changed instance snapshots every SnapshotInterval. It runs
// until persistQ is closed (after Run's other goroutines stopped), then
// flushes everything, snapshots included, so a restart resumes exactly.
func (m *Monitor) persistLoop() {
	st := m.opts.Store
	tick := m.clk.NewTicker(m.opts.SnapshotInterval)
	defer tick.Stop()
	batch := make([]Event, 0, 512)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if st != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			began := time.Now()
			err := st.Append(ctx, batch)
			m.hooks.StoreAppend(time.Since(began), len(batch), err)
			if err != nil {
				m.log.Error("storing events failed; they stay in memory only", "events", len(batch), "err", err)
				m.hooks.EventsDropped(len(batch))
			}
			cancel()
		}
		batch = batch[:0]
	}
	for {
		select {
		case e, ok := <-m.persistQ:
			if !ok {
				flush()
				m.saveSnapshots(true)
				return
			}
			batch = append(batch, e)
			// Take whatever else is already queued: one transaction for a
			// burst of transitions.
			for len(batch) < cap(batch) {
				select {
				case e, ok := <-m.persistQ:
					if !ok {
						flush()
						m.saveSnapshots(true)
						return
					}
					batch = append(batch, e)
					continue
				default:
				}
				break
			}
			flush()
		case <-tick.C():
			m.saveSnapshots(false)
			m.pruneIfDue()
		}
	}
}

// pruneIfDue deletes history older than the retention, at most hourly.
func (m *Monitor) pruneIfDue() {
	st := m.opts.Store
	m.mu.Lock()
	var retention time.Duration
	if m.spec != nil {
		retention = m.spec.Retention
	}
	now := m.now()
	due := retention > 0 && (m.lastPrune == 0 || now-m.lastPrune >= time.Hour)
	if due {
		m.lastPrune = now
	}
	m.mu.Unlock()
	if st == nil || !due {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	before := m.wall(now).Add(-retention)
	n, err := st.Prune(ctx, before)
	if err != nil {
		m.log.Error("pruning history failed", "before", before, "err", err)
		return
	}
	if n > 0 {
		m.log.Info("pruned history", "events", n, "before", before)
	}
}

// saveSnapshots writes instance snapshots: the changed ones, or all.
func (m *Monitor) saveSnapshots(all bool) {
	st := m.opts.Store
	if st == nil {
		return
	}
	m.mu.Lock()
	var snaps []store.Instance
	for _, s := range m.order {
		for _, in := range s.byName {
			if !all && !in.dirty {
				continue
			}
			in.dirty = false
			snaps = append(snaps, m.snapshotLocked(in))
		}
	}
	dels := m.pendingDeletes
	m.pendingDeletes = nil
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if len(dels) > 0 {
		if err := st.DeleteInstances(ctx, dels); err != nil {
			m.log.Error("deleting instance snapshots failed", "err", err)
		}
	}
	if len(snaps) > 0 {
		if err := st.SaveInstances(ctx, snaps); err != nil {
			m.log.Error("saving instance snapshots failed", "instances", len(snaps), "err", err)
		}
	}
}

func (m *Monitor) snapshotLocked(in *instance) store.Instance {
	si := store.Instance{Service: in.svc.name, Instance: in.name, Zone: in.zone.name, State: in.state.String(),
		Since: m.wall(in.since), Reason: in.reason, UpdatedAt: m.wall(m.now())}
	if in.static != nil {
		si.Labels = in.static.labels
	}
	if in.beats > 0 {
		si.LastBeat = m.wall(in.lastBeat)
		est := in.passive.Estimate()
		si.MeanInterval, si.DevInterval, si.RTT = est.Interval, est.Deviation, est.RTT
	}
	for i := range in.active {
		if t := m.wall(in.active[i].lastAt); t.After(si.LastProbe) {
			si.LastProbe = t
		}
	}
	return si
}

func (m *Monitor) deleteSnapshotLocked(in *instance) {
	if m.opts.Store != nil {
		m.pendingDeletes = append(m.pendingDeletes, store.Key{Service: in.svc.name, Instance: in.name})
	}
}

// restore loads the event sequence and instance snapshots from the store.
// Restored instances keep their state; their detectors are seeded with the
// stored estimates as if a beat had just arrived, so a monitor that was
// away does not condemn instances that kept beating while it was gone.
func (m *Monitor) restore(ctx context.Context) error {
	st := m.opts.Store
	if st == nil {
		return nil
	}
	snaps, err := st.LoadInstances(ctx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.unlock()
	now := m.now()
	restored := 0
	for _, si := range snaps {
		s := m.services[si.Service]
		if s == nil || s.removed {
			continue
		}
		in := s.byName[si.Instance]
		if in == nil {
			if !s.cfg.spec.RegisterByBeats {
				continue
			}
			in = m.newInstanceLocked(s, si.Instance, si.Zone, now)
		}
		stt, err := ParseState(si.State)
		if err != nil || stt == Left || in.foreign {
			// A foreign instance's state is its owner's (cluster mode):
			// what was mirrored before Run is newer than the snapshot.
			continue
		}
		m.setStateQuietLocked(in, stt, si.Reason, now)
		if !si.LastBeat.IsZero() && s.cfg.spec.Passive.Enabled {
			in.passive.Seed(s.cfg.passive, detector.Estimate{Interval: si.MeanInterval, Deviation: si.DevInterval, RTT: si.RTT}, now)
			if in.alt != nil {
				in.alt.Observe(now, si.RTT)
			}
			in.beats = 1
			in.lastBeat = now
		}
		m.wheel.schedule(in, now)
		restored++
	}
	if restored > 0 {
		seq := m.seq
		m.later(func() { m.log.Info("restored instance state from the store", "instances", restored, "last_seq", seq) })
	}
	return nil
}

// setStateQuietLocked sets a restored state without an event.
func (m *Monitor) setStateQuietLocked(in *instance, to State, reason string, now time.Duration) {
	s := in.svc
	in.zone.counts[in.state]--
	s.all.counts[in.state]--
	if in.state == Down {
		s.downs--
	}
	in.zone.counts[to]++
	s.all.counts[to]++
	if to == Down {
		s.downs++
	}
	in.state, in.since, in.reason, in.source = to, now, reason, "restored"
}
