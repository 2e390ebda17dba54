package detector

import (
	"math"
	"slices"
	"time"
)

// QoS holds the quality-of-service metrics of a failure detector after Chen,
// Toueg and Aguilera ("On the quality of service of failure detectors",
// 2002), measured over many monitored instances.
type QoS struct {
	AliveHours   float64       // instance-hours during which instances were up
	Mistakes     int           // false suspicions: S-transitions while up
	FalsePerHour float64       // Mistakes / AliveHours
	TMR          time.Duration // mistake recurrence time: mean time between mistakes (Never if none)
	TM           time.Duration // mean mistake duration (0 if none)
	PA           float64       // query accuracy probability: share of up time not suspected
	Crashes      int           // crashes detected
	TDMean       time.Duration // detection time: crash → permanent suspicion
	TDP99        time.Duration // nearest-rank 99th percentile
	TDMax        time.Duration
}

// QoSRecorder accumulates the raw measurements behind QoS. The zero value is
// ready. Durations are summed as integers, so merging recorders in any order
// gives identical results.
type QoSRecorder struct {
	alive     time.Duration
	suspected time.Duration // suspected while up
	mistakeT  time.Duration
	mistakes  int
	td        []time.Duration
}

// Alive adds up time.
func (r *QoSRecorder) Alive(d time.Duration) { r.alive += d }

// Mistake records a false suspicion lasting d while the instance was up.
func (r *QoSRecorder) Mistake(d time.Duration) {
	r.mistakes++
	r.mistakeT += d
	r.suspected += d
}

// Detection records the detection time of one crash.
func (r *QoSRecorder) Detection(td time.Duration) { r.td = append(r.td, td) }

// Merge adds o's measurements to r.
func (r *QoSRecorder) Merge(o *QoSRecorder) {
	r.alive += o.alive
	r.suspected += o.suspected
	r.mistakeT += o.mistakeT
	r.mistakes += o.mistakes
	r.td = append(r.td, o.td...)
}

// QoS computes the metrics.
func (r *QoSRecorder) QoS() QoS {
	q := QoS{AliveHours: r.alive.Hours(), Mistakes: r.mistakes, TMR: Never, PA: 1, Crashes: len(r.td)}
	if r.alive > 0 {
		q.FalsePerHour = float64(r.mistakes) / r.alive.Hours()
		q.PA = 1 - float64(r.suspected)/float64(r.alive)
	}
	if r.mistakes > 0 {
		q.TMR = r.alive / time.Duration(r.mistakes)
		q.TM = r.mistakeT / time.Duration(r.mistakes)
	}
	if n := len(r.td); n > 0 {
		td := slices.Clone(r.td)
		slices.Sort(td)
		var sum float64
		for _, d := range td {
			sum += float64(d)
		}
		q.TDMean = time.Duration(math.Round(sum / float64(n)))
		q.TDP99 = td[(99*n+99)/100-1]
		q.TDMax = td[n-1]
	}
	return q
}
