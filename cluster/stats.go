package cluster

import (
	"sync/atomic"
	"time"
)

// counters are the node's running totals.
type counters struct {
	viewChanges, reregistrations, keepalives        atomic.Uint64
	lastView                                        atomic.Int64 // unix ns
	forwarded, forwardDropped, forwardErrors        atomic.Uint64
	forwardMisrouted, forwardReceived, misrouted    atomic.Uint64
	published, publishTxns, publishErrors, mirrored atomic.Uint64
	confirmAsked, confirmAgreed, confirmDisagreed   atomic.Uint64
	confirmServed                                   atomic.Uint64
	configApplied, configRejected                   atomic.Uint64
	malformed, unauthenticated, panics              atomic.Uint64
}

// Stats is a snapshot of a node's cluster activity (exported as metrics
// by the daemon; docs/cluster.md lists them).
type Stats struct {
	Members        []string
	Healthy        bool
	ViewChanges    uint64
	LastViewChange time.Time
	// Reregistrations counts new leases after the old one expired.
	Reregistrations uint64
	// Forwarded beats the owners accepted; ForwardDropped were lost (full
	// queue, unreachable owner); ForwardMisrouted the owners refused as
	// not theirs. ForwardReceived came from peers for this node;
	// Misrouted were refused here.
	Forwarded, ForwardDropped, ForwardErrors, ForwardMisrouted uint64
	ForwardReceived, Misrouted                                 uint64
	// Published state records, in PublishTxns transactions.
	Published, PublishTxns, PublishErrors uint64
	// Mirrored peer states applied to the monitor.
	Mirrored uint64
	// Confirmations this node asked for, and how they came out;
	// ConfirmServed are the probes it ran for peers.
	ConfirmAsked, ConfirmAgreed, ConfirmDisagreed, ConfirmServed uint64
	ConfigApplied, ConfigRejected                                uint64
	Malformed, Unauthenticated, Panics                           uint64
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	c := &n.stats
	s := Stats{Members: memberIDs(n.ring.Load()), Healthy: n.healthy.Load(), ViewChanges: c.viewChanges.Load(),
		Reregistrations: c.reregistrations.Load(),
		Forwarded:       c.forwarded.Load(), ForwardDropped: c.forwardDropped.Load(), ForwardErrors: c.forwardErrors.Load(),
		ForwardMisrouted: c.forwardMisrouted.Load(), ForwardReceived: c.forwardReceived.Load(), Misrouted: c.misrouted.Load(),
		Published: c.published.Load(), PublishTxns: c.publishTxns.Load(), PublishErrors: c.publishErrors.Load(),
		Mirrored: c.mirrored.Load(), ConfirmAsked: c.confirmAsked.Load(), ConfirmAgreed: c.confirmAgreed.Load(),
		ConfirmDisagreed: c.confirmDisagreed.Load(), ConfirmServed: c.confirmServed.Load(),
		ConfigApplied: c.configApplied.Load(), ConfigRejected: c.configRejected.Load(),
		Malformed: c.malformed.Load(), Unauthenticated: c.unauthenticated.Load(), Panics: c.panics.Load()}
	if t := c.lastView.Load(); t != 0 {
		s.LastViewChange = time.Unix(0, t)
	}
	return s
}
