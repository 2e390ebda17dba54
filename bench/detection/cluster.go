package detection

import (
	"sync"
	"time"
)

// event is one verdict change seen by an observer: memberlist member i
// (NotifyLeave = dead, NotifyJoin = alive) or pulse's monitor (observer 0;
// its state names).
type event struct {
	At       time.Time
	Observer int
	Subject  int
	To       string // "dead" (memberlist) / "down", "suspect", "protected", "alive", ...
	Reason   string // pulse: the monitor's reason
}

// cluster is one system under test, with the faults the scenarios inject.
type cluster interface {
	crash(i int)
	setLoss(p float64)
	setCut(i int, on bool)
	bytes() int64
	faultStats() (sent, lost, dials, dialsLost int64)
	events() []event
	// observers is how many members observe (memberlist: N; pulse: 1).
	observers() int
	// deadState is the state name that means "declared failed".
	deadState() string
	close()
}

// eventLog is a concurrency-safe append-only log.
type eventLog struct {
	mu  sync.Mutex
	evs []event
}

func (l *eventLog) add(e event) {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
}

func (l *eventLog) snapshot() []event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]event(nil), l.evs...)
}
