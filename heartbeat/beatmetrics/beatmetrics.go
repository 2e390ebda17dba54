// Package beatmetrics owns the opt-in Prometheus collector of a
// heartbeat.Sender, so a service can see its own beats (sent, ACKed,
// retransmitted, RTT) next to its other metrics; the heartbeat package
// itself stays free of Prometheus.
package beatmetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fb4b1dcc/pulse/heartbeat"
)

// Collector reads a Sender's counters at scrape time.
type Collector struct {
	s                                       *heartbeat.Sender
	beats, acked, unacked, retrans, skipped *prometheus.Desc
	errors, srtt, interval                  *prometheus.Desc
}

// New returns a collector for s; series are pulse_sender_*.
func New(s *heartbeat.Sender) *Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("pulse_sender_"+name, help, nil, nil)
	}
	return &Collector{s: s,
		beats:    d("beats_total", "Beats sent (first transmissions)."),
		acked:    d("acked_total", "Beats the monitor answered."),
		unacked:  d("unacked_total", "Beats whose window closed without an answer."),
		retrans:  d("retransmits_total", "UDP retransmissions of unanswered beats."),
		skipped:  d("skipped_total", "Beats not sent because every send slot was busy or no connection existed."),
		errors:   d("errors_total", "Beats that failed otherwise (refused, rejected)."),
		srtt:     d("rtt_seconds", "Smoothed round-trip time to the monitor (handshakes excluded)."),
		interval: d("interval_seconds", "The beat interval in use (the monitor can change it in its ACKs)."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.beats, c.acked, c.unacked, c.retrans, c.skipped, c.errors, c.srtt, c.interval} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for _, x := range []struct {
		d *prometheus.Desc
		v uint64
	}{{c.beats, st.Beats}, {c.acked, st.Acked}, {c.unacked, st.Unacked}, {c.retrans, st.Retransmits}, {c.skipped, st.Skipped}, {c.errors, st.Errors}} {
		ch <- prometheus.MustNewConstMetric(x.d, prometheus.CounterValue, float64(x.v))
	}
	ch <- prometheus.MustNewConstMetric(c.srtt, prometheus.GaugeValue, st.SRTT.Seconds())
	ch <- prometheus.MustNewConstMetric(c.interval, prometheus.GaugeValue, st.Interval.Seconds())
}
