package wire

// WindowSize is how many sequence numbers behind the newest one a Window
// still tells apart (late, reordered beats inside it are accepted once).
const WindowSize = 64

// Verdict is a Window's judgement of one (epoch, seq).
type Verdict uint8

const (
	Fresh     Verdict = iota // not seen before: accept
	Duplicate                // seen within the window: a retransmission or a copy; ACK it, do not observe it again
	Replay                   // older than the window or than the current epoch: drop
)

func (v Verdict) String() string {
	switch v {
	case Fresh:
		return "fresh"
	case Duplicate:
		return "duplicate"
	case Replay:
		return "replay"
	}
	return "unknown"
}

// Window is the per-instance sliding replay window. A sender numbers beats
// from any start within an epoch; a restarted sender uses a larger epoch,
// which resets the window, so it is not mistaken for a replay. The zero
// Window has seen nothing. It is not safe for concurrent use.
type Window struct {
	epoch uint64
	top   uint64 // highest seq accepted in epoch
	bits  uint64 // bit i set: seq top-i accepted
	used  bool
}

// Check judges (epoch, seq) without recording it, so a caller can decline
// to accept (for example when its queue is full) and let a retransmission
// try again.
func (w *Window) Check(epoch, seq uint64) Verdict {
	switch {
	case !w.used || epoch > w.epoch:
		return Fresh
	case epoch < w.epoch:
		return Replay
	case seq > w.top:
		return Fresh
	}
	d := w.top - seq
	if d >= WindowSize {
		return Replay
	}
	if w.bits&(1<<d) != 0 {
		return Duplicate
	}
	return Fresh
}

// Accept records (epoch, seq); call it only after Check returned Fresh.
func (w *Window) Accept(epoch, seq uint64) {
	if !w.used || epoch > w.epoch {
		*w = Window{epoch: epoch, top: seq, bits: 1, used: true}
		return
	}
	if seq > w.top {
		shift := seq - w.top
		if shift >= WindowSize {
			w.bits = 1
		} else {
			w.bits = w.bits<<shift | 1
		}
		w.top = seq
		return
	}
	w.bits |= 1 << (w.top - seq)
}

// Epoch and Top report the newest accepted (epoch, seq).
func (w *Window) Epoch() uint64 { return w.epoch }
func (w *Window) Top() uint64   { return w.top }
