package ingest

import (
	"crypto/subtle"
	"net/netip"
	"strings"
	"time"

	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// beatReq is a beat that arrived over HTTP or gRPC, already parsed.
type beatReq struct {
	service, instance string
	epoch, seq        uint64
	sentAt            time.Duration
	status            status.Status
	reason            wire.Reason
	interval, rtt     time.Duration
	attempt           uint8
	trace             wire.TraceContext
	peer              netip.AddrPort
}

// result of accepting one request-borne beat.
type result struct {
	accepted  bool // observed (or a duplicate, see dup)
	dup       bool
	drop      DropReason // meaningful when !accepted
	msg       string     // for a non-accepted result: what went wrong and what to do
	directive wire.Directive
}

// bearer extracts the token of an "Authorization: Bearer <token>" value.
func bearer(h string) string {
	const p = "bearer "
	if len(h) > len(p) && strings.EqualFold(h[:len(p)], p) {
		return strings.TrimSpace(h[len(p):])
	}
	return ""
}

// authorized reports whether token is one of service's tokens. Every
// configured token of the service is compared, in constant time, so the
// answer time does not tell which one (or how much of one) matched.
func (r *Receiver) authorized(service, token string) bool {
	if token == "" {
		return false
	}
	toks := (*r.tokens.Load())[service]
	ok := 0
	for _, t := range toks {
		ok |= subtle.ConstantTimeCompare([]byte(t), []byte(token))
	}
	return ok == 1
}

// validate checks what the binary decoder checks for UDP.
func (q *beatReq) validate() string {
	if wire.ValidID(q.service) != nil {
		return "service id must be 1-128 bytes of visible ASCII (no spaces)"
	}
	if wire.ValidID(q.instance) != nil {
		return "instance id must be 1-128 bytes of visible ASCII (no spaces)"
	}
	if !q.status.Valid() {
		return "status must be unknown, healthy, degraded or unhealthy"
	}
	if q.sentAt < 0 {
		return "sent_at_ns must not be negative"
	}
	return ""
}

// accept runs auth (already done by the caller), interning, the replay
// window and the queue for one beat that came over HTTP or gRPC.
func (r *Receiver) accept(t wire.Transport, q *beatReq) result {
	now := r.clock.Now()
	kp := bodyPool.Get().(*[]byte)
	key := append(append(append((*kp)[:0], q.service...), 0), q.instance...)
	st := r.table.getString(key, q.service, q.instance)
	*kp = key[:0]
	bodyPool.Put(kp)
	if st == nil {
		r.c.dropped[DropLimit].Add(1)
		return result{drop: DropLimit, msg: "the monitor's instance table is full (instances idle for a day are forgotten); spread the fleet over more monitors"}
	}
	st.lastSeen.Store(int64(now.Sub(r.origin)))
	room := r.q.reserve(1)
	reserved := room
	out := judge(st, q.epoch, q.seq, &room)
	res := result{directive: r.directive(st)}
	var obs [1]Observation
	n := 0
	switch out {
	case outReplay:
		r.c.dropped[DropReplay].Add(1)
		res = result{drop: DropReplay, msg: "epoch or seq older than already seen: a restarted sender must use a larger epoch"}
	case outOverflow:
		r.c.dropped[DropOverflow].Add(1)
		res = result{drop: DropOverflow, msg: "the monitor's queue is full; retry shortly"}
	case outDuplicate:
		r.c.dropped[DropDuplicate].Add(1)
		res.accepted, res.dup = true, true
	case outAccepted:
		res.accepted = true
		obs[0] = Observation{
			Service: st.service, Instance: st.instance, Source: Passive, Transport: t,
			Epoch: q.epoch, Seq: q.seq, SentAt: q.sentAt, ReceivedAt: now, RTT: q.rtt,
			Interval: q.interval, Status: q.status, Reason: q.reason, Attempt: q.attempt,
			TraceParent: q.trace, Peer: q.peer,
		}
		n = 1
		r.c.accepted[t].Add(1)
		r.traceReceive(&obs[0])
	}
	r.q.commit(obs[:n], reserved)
	return res
}
