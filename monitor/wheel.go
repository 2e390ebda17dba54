package monitor

import "time"

// wheel is a hashed timing wheel of instances keyed by the next instant
// each needs judging (its detector deadline, the end of a down_after wait, a
// grace period, flap reuse). The judge visits only the slots whose time has
// come, not every instance every tick: with a million instances beating
// every second, a tick touches the few whose deadline passed.
//
// Entries are lazy: an arrival that moves a deadline later leaves the
// instance where it is; when its slot comes, the judge finds it not yet due
// and reinserts it at its new time. Only a deadline that moves earlier is
// relinked at once. Both are O(1).
type wheel struct {
	res   time.Duration // slot width
	slots []*instance   // heads of doubly linked lists
	mask  int64
	cur   int64 // next slot number to process (absolute: time/res)
	n     int
}

func newWheel(res time.Duration, size int) *wheel {
	// size must be a power of two for the mask.
	s := 1
	for s < size {
		s <<= 1
	}
	return &wheel{res: res, slots: make([]*instance, s), mask: int64(s - 1)}
}

func (w *wheel) slotOf(at time.Duration) int64 {
	// Round up so an entry is never visited before its time.
	return int64((at + w.res - 1) / w.res)
}

// schedule puts in at instant at (or relinks it if it is queued later).
func (w *wheel) schedule(in *instance, at time.Duration) {
	if in.wheelQueued {
		if at >= in.wheelAt {
			return // lazy: visited at its old slot, rescheduled then
		}
		w.unlink(in)
	}
	in.wheelAt = at
	s := max(w.slotOf(at), w.cur) & w.mask
	in.wheelSlot = int32(s)
	head := &w.slots[s]
	in.wheelNext, in.wheelPrev = *head, nil
	if *head != nil {
		(*head).wheelPrev = in
	}
	*head = in
	in.wheelQueued = true
	w.n++
}

func (w *wheel) unlink(in *instance) {
	if !in.wheelQueued {
		return
	}
	if in.wheelPrev != nil {
		in.wheelPrev.wheelNext = in.wheelNext
	} else {
		w.slots[in.wheelSlot] = in.wheelNext
	}
	if in.wheelNext != nil {
		in.wheelNext.wheelPrev = in.wheelPrev
	}
	in.wheelNext, in.wheelPrev, in.wheelQueued = nil, nil, false
	w.n--
}

// advance visits every slot up to now and appends to buf each entry whose
// time has come, removed from the wheel (the caller judges it and
// reschedules it if it needs another visit). Entries of far-future rounds
// sharing a slot stay. Collecting first keeps the lists intact while the
// caller's judging reschedules other instances.
func (w *wheel) advance(now time.Duration, buf []*instance) []*instance {
	end := int64(now / w.res)
	// Bound the work after a long stall: one full turn visits every slot.
	if end-w.cur >= int64(len(w.slots)) {
		w.cur = end - int64(len(w.slots)) + 1
	}
	for ; w.cur <= end; w.cur++ {
		for in := w.slots[w.cur&w.mask]; in != nil; {
			next := in.wheelNext
			if in.wheelAt <= now {
				w.unlink(in)
				buf = append(buf, in)
			}
			in = next
		}
	}
	return buf
}
