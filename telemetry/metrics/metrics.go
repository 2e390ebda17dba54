package metrics

import (
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/probe"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// Phases of a probe, in the pulse_probe_duration_seconds phase label.
var phases = []string{"dns", "connect", "tls", "ttfb", "transfer", "total"}

// latencyBuckets span loopback to cross-region answers.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// intervalBuckets span sub-second to minute-scale beat intervals.
var intervalBuckets = []float64{.05, .1, .25, .5, .75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60, 120}

func histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: name, Help: help, Buckets: buckets,
		// Native histograms too, for scrapers that negotiate them; classic
		// buckets stay for the rest.
		NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 160,
		NativeHistogramMinResetDuration: time.Hour,
	}, labels)
}

// Metrics is the monitor's instrumentation. Create it with New, pass it as
// monitor.Options.Hooks, and register it (it is a prometheus.Collector).
type Metrics struct {
	observations     *prometheus.CounterVec
	probeDuration    *prometheus.HistogramVec
	beatRTT          *prometheus.HistogramVec
	beatInterarrival *prometheus.HistogramVec
	transitions      *prometheus.CounterVec
	protection       *prometheus.CounterVec
	capped           *prometheus.CounterVec
	eventsDropped    prometheus.Counter
	storeAppend      prometheus.Histogram

	mu      sync.Mutex
	sources []func(ch chan<- prometheus.Metric)
}

// New returns the instrumentation with every series family created.
func New() *Metrics {
	return &Metrics{
		observations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_observations_total",
			Help: "Observations the monitor judged, by source (passive beats, active probes), transport or probe kind, and result."},
			[]string{"service", "source", "transport", "result"}),
		probeDuration: histogram("pulse_probe_duration_seconds", "Active probe duration by phase (dns, connect, tls, ttfb, transfer) and in total.",
			latencyBuckets, "service", "module", "phase"),
		beatRTT: histogram("pulse_beat_rtt_seconds", "Round-trip time of passive beats as their senders measure it (handshakes excluded).",
			latencyBuckets, "service", "transport"),
		beatInterarrival: histogram("pulse_beat_interarrival_seconds", "Time between consecutive beats of an instance at the monitor.",
			intervalBuckets, "service"),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_transitions_total",
			Help: "Instance state transitions by from, to and a coarse class of their reason."},
			[]string{"service", "from", "to", "reason_class"}),
		protection: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_protection_changes_total",
			Help: "Times protection against correlated failure turned on or off, per service and zone."},
			[]string{"service", "zone", "state"}),
		capped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pulse_ejections_capped_total",
			Help: "Down verdicts held back because the service reached its maximum ejection share."}, []string{"service"}),
		eventsDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "pulse_events_dropped_total",
			Help: "Transition events the store did not record (queue full or write error); they stay in memory only."}),
		storeAppend: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pulse_store_append_duration_seconds",
			Help: "Time to write one batch of events durably to the store.", Buckets: latencyBuckets}),
	}
}

// Describe implements prometheus.Collector (unchecked: the scrape-time
// families depend on the configuration).
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
	m.mu.Lock()
	srcs := append([]func(chan<- prometheus.Metric){}, m.sources...)
	m.mu.Unlock()
	for _, s := range srcs {
		s(ch)
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.observations, m.probeDuration, m.beatRTT, m.beatInterarrival, m.transitions,
		m.protection, m.capped, m.eventsDropped, m.storeAppend}
}

// addSource adds a scrape-time source of metrics.
func (m *Metrics) addSource(f func(ch chan<- prometheus.Metric)) {
	m.mu.Lock()
	m.sources = append(m.sources, f)
	m.mu.Unlock()
}

// ForService implements monitor.Hooks: label values are resolved once per
// service, so the hot path only touches pre-built series.
func (m *Metrics) ForService(service string) monitor.ServiceHooks {
	h := &serviceHooks{m: m, service: service, modules: map[string]*moduleSeries{}}
	for t := wire.UDP; t <= wire.GRPC; t++ {
		ts := t.String()
		h.rtt[t] = m.beatRTT.WithLabelValues(service, ts)
		for st := status.Unknown; st <= status.Unhealthy; st++ {
			h.beats[t][st] = m.observations.WithLabelValues(service, "passive", ts, st.String())
		}
	}
	h.interarrival = m.beatInterarrival.WithLabelValues(service)
	return h
}

// Protection implements monitor.Hooks.
func (m *Metrics) Protection(service, zone string, on bool, _ string) {
	st := "off"
	if on {
		st = "on"
	}
	if service == "" {
		service = "(monitor)"
	}
	m.protection.WithLabelValues(service, zone, st).Inc()
}

// EjectionCapped implements monitor.Hooks.
func (m *Metrics) EjectionCapped(service string) { m.capped.WithLabelValues(service).Inc() }

// EventsDropped implements monitor.Hooks.
func (m *Metrics) EventsDropped(n int) { m.eventsDropped.Add(float64(n)) }

// StoreAppend implements monitor.Hooks.
func (m *Metrics) StoreAppend(d time.Duration, _ int, _ error) { m.storeAppend.Observe(d.Seconds()) }

var _ monitor.Hooks = (*Metrics)(nil)

type serviceHooks struct {
	m            *Metrics
	service      string
	rtt          [wire.GRPC + 1]prometheus.Observer
	beats        [wire.GRPC + 1][status.Unhealthy + 1]prometheus.Counter
	interarrival prometheus.Observer

	mu      sync.Mutex
	modules map[string]*moduleSeries
}

type moduleSeries struct {
	phase   [6]prometheus.Observer
	results map[string]prometheus.Counter
}

func (h *serviceHooks) Beat(t wire.Transport, rtt, interarrival time.Duration, traceID [16]byte) {
	if t > wire.GRPC {
		t = wire.TransportUnknown
	}
	if t == wire.TransportUnknown {
		return
	}
	if rtt > 0 {
		observe(h.rtt[t], rtt, traceID)
	}
	if interarrival > 0 {
		h.interarrival.Observe(interarrival.Seconds())
	}
}

// BeatStatus counts a beat by the status it reported.
func (h *serviceHooks) BeatStatus(t wire.Transport, st status.Status) {
	if t > wire.GRPC || st > status.Unhealthy || t == wire.TransportUnknown {
		return
	}
	h.beats[t][st].Inc()
}

// observe records a value with the trace id as exemplar when there is one.
func observe(o prometheus.Observer, d time.Duration, traceID [16]byte) {
	if traceID != ([16]byte{}) {
		if eo, ok := o.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(d.Seconds(), prometheus.Labels{"trace_id": hex.EncodeToString(traceID[:])})
			return
		}
	}
	o.Observe(d.Seconds())
}

func (h *serviceHooks) series(module string) *moduleSeries {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.modules[module]
	if s == nil {
		s = &moduleSeries{results: map[string]prometheus.Counter{}}
		for i, p := range phases {
			s.phase[i] = h.m.probeDuration.WithLabelValues(h.service, module, p)
		}
		h.modules[module] = s
	}
	return s
}

func (h *serviceHooks) Probe(module string, r *probe.Result) {
	s := h.series(module)
	var tid [16]byte
	if len(r.TraceID) == 32 {
		hex.Decode(tid[:], []byte(r.TraceID))
	}
	ph := r.Phases
	for i, d := range []time.Duration{ph.DNS, ph.Connect, ph.TLS, ph.TTFB, ph.Transfer, r.Latency} {
		if d > 0 {
			observe(s.phase[i], d, tid)
		}
	}
	result := r.Status.String()
	if r.Status != status.Healthy && r.Class != status.ClassNone {
		result = string(r.Class)
	}
	kind := string(r.Kind)
	if kind == "" {
		kind = "probe"
	}
	key := kind + "/" + result
	h.mu.Lock()
	c := s.results[key]
	if c == nil {
		c = h.m.observations.WithLabelValues(h.service, "active", kind, result)
		s.results[key] = c
	}
	h.mu.Unlock()
	c.Inc()
}

func (h *serviceHooks) Transition(from, to monitor.State, reasonClass string) {
	h.m.transitions.WithLabelValues(h.service, from.String(), to.String(), reasonClass).Inc()
}

// WatchMonitor adds pulse_instances, pulse_protection_active and the
// monitor's own counters, read from m at scrape time (group counts, not
// instances: a million instances cost a few series).
func (m *Metrics) WatchMonitor(mon *monitor.Monitor, maxPerInstance int) {
	instances := prometheus.NewDesc("pulse_instances", "Instances per service, zone and combined verdict state.", []string{"service", "zone", "state"}, nil)
	protected := prometheus.NewDesc("pulse_protection_active", "1 while protection against correlated failure holds for the service as a whole (zone \"*\") or for a zone.", []string{"service", "zone"}, nil)
	isolated := prometheus.NewDesc("pulse_monitor_isolated", "1 while the monitor's own connectivity check fails and it issues no down verdicts.", nil, nil)
	dropped := prometheus.NewDesc("pulse_observations_unknown_total", "Beats naming a service or instance the configuration does not admit.", nil, nil)
	tasks := prometheus.NewDesc("pulse_probe_tasks", "Active probe tasks scheduled.", nil, nil)
	skipped := prometheus.NewDesc("pulse_probes_skipped_total", "Probe runs skipped because the previous one was still running (busy) or the concurrency bound was reached (overload).", []string{"reason"}, nil)
	perState := prometheus.NewDesc("pulse_instance_state", "1 for the instance's current state (only services with metrics.per_instance).", []string{"service", "instance", "zone", "state"}, nil)
	perSusp := prometheus.NewDesc("pulse_instance_suspicion", "The passive detector's suspicion level (threshold 8; only services with metrics.per_instance).", []string{"service", "instance"}, nil)
	perOmitted := prometheus.NewDesc("pulse_instance_series_omitted", "Instances left out of per-instance series because the service exceeds the cardinality bound.", []string{"service"}, nil)
	m.addSource(func(ch chan<- prometheus.Metric) {
		mon.Counts(func(service, zone string, st monitor.State, n int) {
			ch <- prometheus.MustNewConstMetric(instances, prometheus.GaugeValue, float64(n), service, zone, st.String())
		})
		mon.ProtectionStatus(func(service, zone string, on bool) {
			v := 0.0
			if on {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(protected, prometheus.GaugeValue, v, service, zone)
		})
		iso, _ := mon.Isolated()
		v := 0.0
		if iso {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(isolated, prometheus.GaugeValue, v)
		ch <- prometheus.MustNewConstMetric(dropped, prometheus.CounterValue, float64(mon.Dropped()))
		ss := mon.SchedulerStats()
		ch <- prometheus.MustNewConstMetric(tasks, prometheus.GaugeValue, float64(ss.Tasks))
		ch <- prometheus.MustNewConstMetric(skipped, prometheus.CounterValue, float64(ss.SkippedBusy), "busy")
		ch <- prometheus.MustNewConstMetric(skipped, prometheus.CounterValue, float64(ss.SkippedOverload), "overload")
		spec := mon.Spec()
		if spec == nil {
			return
		}
		for _, s := range spec.Services {
			if !s.PerInstanceMetrics {
				continue
			}
			list, total, err := mon.Instances(s.Name, monitor.Filter{Limit: maxPerInstance})
			if err != nil {
				continue
			}
			for _, in := range list {
				ch <- prometheus.MustNewConstMetric(perState, prometheus.GaugeValue, 1, s.Name, in.Instance, in.Zone, in.State.String())
				if in.Beats > 0 {
					ch <- prometheus.MustNewConstMetric(perSusp, prometheus.GaugeValue, in.Suspicion, s.Name, in.Instance)
				}
			}
			ch <- prometheus.MustNewConstMetric(perOmitted, prometheus.GaugeValue, float64(total-len(list)), s.Name)
		}
	})
}

// WatchIngest adds the receiver's counters at scrape time.
func (m *Metrics) WatchIngest(r *ingest.Receiver) {
	received := prometheus.NewDesc("pulse_ingest_packets_total", "Beat datagrams and requests read, by transport.", []string{"transport"}, nil)
	accepted := prometheus.NewDesc("pulse_ingest_accepted_total", "Beats accepted and queued for judging, by transport.", []string{"transport"}, nil)
	drops := prometheus.NewDesc("pulse_ingest_dropped_total", "Beats dropped, by reason (malformed, oversized, auth, replay, overflow, ...).", []string{"reason"}, nil)
	depth := prometheus.NewDesc("pulse_ingest_queue_depth", "Beats waiting between the readers and the verdict engine.", nil, nil)
	capacity := prometheus.NewDesc("pulse_ingest_queue_capacity", "Capacity of the ingest queue.", nil, nil)
	batches := prometheus.NewDesc("pulse_ingest_read_batch_size", "Datagrams per UDP read (recvmmsg batch).", nil, nil)
	acks := prometheus.NewDesc("pulse_ingest_acks_total", "ACKs sent for UDP beats.", nil, nil)
	panics := prometheus.NewDesc("pulse_ingest_panics_total", "Recovered panics in the ingest path (each one is a bug).", nil, nil)
	m.addSource(func(ch chan<- prometheus.Metric) {
		st := r.Stats()
		for t := wire.UDP; t <= wire.GRPC; t++ {
			ch <- prometheus.MustNewConstMetric(received, prometheus.CounterValue, float64(st.Received[t]), t.String())
			ch <- prometheus.MustNewConstMetric(accepted, prometheus.CounterValue, float64(st.Accepted[t]), t.String())
		}
		for _, reason := range ingest.DropReasons() {
			ch <- prometheus.MustNewConstMetric(drops, prometheus.CounterValue, float64(st.Drops(reason)), strings.ReplaceAll(reason.String(), "-", "_"))
		}
		ch <- prometheus.MustNewConstMetric(depth, prometheus.GaugeValue, float64(st.QueueDepth))
		ch <- prometheus.MustNewConstMetric(capacity, prometheus.GaugeValue, float64(st.QueueCap))
		ch <- batchHistogram(batches, st.ReadBatches, st.ReadBatchSizes[:])
		ch <- prometheus.MustNewConstMetric(acks, prometheus.CounterValue, float64(st.AcksSent))
		ch <- prometheus.MustNewConstMetric(panics, prometheus.CounterValue, float64(st.Panics))
	})
}

// batchHistogram turns ingest's log2 buckets (bucket i counts sizes in
// [2^i, 2^(i+1))) into a Prometheus histogram.
func batchHistogram(d *prometheus.Desc, count uint64, log2 []uint64) prometheus.Metric {
	buckets := map[float64]uint64{}
	var cum uint64
	sum := 0.0
	for i, n := range log2 {
		cum += n
		upper := float64(uint64(1)<<(i+1)) - 1
		buckets[upper] = cum
		sum += float64(n) * float64(uint64(1)<<i) // lower bound: an estimate
	}
	return prometheus.MustNewConstHistogram(d, count, sum, buckets)
}

// Func adds any scrape-time source (config reload counters, store stats).
func (m *Metrics) Func(f func(ch chan<- prometheus.Metric)) { m.addSource(f) }
