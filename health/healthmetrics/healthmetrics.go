// Package healthmetrics owns the opt-in Prometheus collector of a
// health.Health: a service that wants its checks on its own /metrics
// registers it; the health package itself stays free of Prometheus.
package healthmetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fb4b1dcc/pulse/health"
	"github.com/fb4b1dcc/pulse/status"
)

// Collector reads a Health's snapshot at scrape time (no lock, no I/O).
type Collector struct {
	h                              *health.Health
	live, ready, draining          *prometheus.Desc
	check, latency, age, runs, tos *prometheus.Desc
}

// New returns a collector whose series are named prefix_* (for example
// "myservice_health"; pulse itself uses "pulse_monitor").
func New(h *health.Health, prefix string) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prefix+"_"+name, help, labels, nil)
	}
	return &Collector{h: h,
		live:     d("live", "1 when /livez answers 200."),
		ready:    d("ready", "1 when /readyz answers 200."),
		draining: d("draining", "1 once shutdown started draining."),
		check:    d("check_status", "1 for each check's current status (healthy, degraded, unhealthy, unknown).", "check", "status"),
		latency:  d("check_latency_seconds", "Latency of each check's last completed run.", "check"),
		age:      d("check_runs_total", "Completed runs of each check.", "check"),
		runs:     d("check_timeouts_total", "Runs abandoned at the check's timeout.", "check"),
		tos:      d("check_skipped_total", "Scheduled runs skipped because an abandoned run was still in flight.", "check"),
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.live, c.ready, c.draining, c.check, c.latency, c.age, c.runs, c.tos} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.h.Snapshot()
	ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, b2f(s.Live))
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, b2f(s.Ready))
	ch <- prometheus.MustNewConstMetric(c.draining, prometheus.GaugeValue, b2f(s.Draining))
	for _, k := range s.Checks {
		for _, st := range []status.Status{status.Healthy, status.Degraded, status.Unhealthy, status.Unknown} {
			ch <- prometheus.MustNewConstMetric(c.check, prometheus.GaugeValue, b2f(k.Status == st), k.Name, st.String())
		}
		ch <- prometheus.MustNewConstMetric(c.latency, prometheus.GaugeValue, k.Latency.Seconds(), k.Name)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.CounterValue, float64(k.Runs), k.Name)
		ch <- prometheus.MustNewConstMetric(c.runs, prometheus.CounterValue, float64(k.Timeouts), k.Name)
		ch <- prometheus.MustNewConstMetric(c.tos, prometheus.CounterValue, float64(k.Skipped), k.Name)
	}
}
