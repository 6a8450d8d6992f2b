package monitor

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/exposure-monitor/exposure/snapshot"
)

const namespace = "exposure"

// Scan results, the values of the result label of exposure_scans_total.
const (
	resultSuccess    = "success"
	resultIncomplete = "incomplete"
	resultFailed     = "failed"
)

// metrics are the daemon's own instruments. The per-port series come from
// portCollector instead, so that closed ports vanish at the next scrape.
type metrics struct {
	scanDuration     *prometheus.HistogramVec
	scans            *prometheus.CounterVec
	skipped          *prometheus.CounterVec
	running          prometheus.Gauge
	lastSuccess      *prometheus.GaugeVec
	openPorts        *prometheus.GaugeVec
	hostsUp          *prometheus.GaugeVec
	changes          *prometheus.CounterVec
	svDetections     *prometheus.CounterVec
	probesSent       *prometheus.CounterVec
	retransmits      *prometheus.CounterVec
	reloadSuccessful prometheus.Gauge
	reloadTimestamp  prometheus.Gauge
	targets          prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		scanDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "scan_duration_seconds",
			Help:    "Duration of one scan of a target: sweep, service detection, diff and commit.",
			Buckets: []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}, []string{"target"}),
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "scans_total",
			Help: "Scans by result: success, incomplete (cut short, stored but not diffed), failed.",
		}, []string{"target", "result"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "scans_skipped_total",
			Help: "Scheduled runs skipped because the previous scan of the target was still running.",
		}, []string{"target"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "scans_running",
			Help: "Scans holding a slot of the concurrency limit.",
		}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "last_scan_success_timestamp_seconds",
			Help: "Unix time the last complete scan of the target finished.",
		}, []string{"target"}),
		openPorts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "open_ports",
			Help: "Open ports found by the last complete scan of the target.",
		}, []string{"target"}),
		hostsUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "hosts_up",
			Help: "Hosts up in the last complete scan of the target.",
		}, []string{"target"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "changes_total",
			Help: "Changes and policy verdicts committed, by kind.",
		}, []string{"target", "kind"}),
		svDetections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "service_detections_total",
			Help: "Open ports after service detection, by result: kept (the cheap fingerprint held, the last detection was kept) or full (detected in full).",
		}, []string{"target", "result"}),
		probesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "probes_sent_total",
			Help: "Probes sent by the scan engine.",
		}, []string{"target"}),
		retransmits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "probe_retransmits_total",
			Help: "Probes the scan engine sent again because no reply came.",
		}, []string{"target"}),
		reloadSuccessful: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_last_reload_successful",
			Help: "Whether the last configuration reload attempt was successful.",
		}),
		reloadTimestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration reload.",
		}),
		targets: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "targets",
			Help: "Targets scheduled.",
		}),
	}
	for _, c := range []prometheus.Collector{
		m.scanDuration, m.scans, m.skipped, m.running, m.lastSuccess, m.openPorts, m.hostsUp,
		m.changes, m.svDetections, m.probesSent, m.retransmits, m.reloadSuccessful, m.reloadTimestamp, m.targets,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

// scanResults are the values of the result label of exposure_scans_total.
var scanResults = [...]string{resultSuccess, resultIncomplete, resultFailed}

// init creates the per-target counters at 0 when a target is scheduled, so
// that the first change, failure or skip of a target is an increase that
// rate() and increase() can see, not a series appearing at 1.
func (m *metrics) init(target string) {
	// The kind label takes every kind a diff can commit.
	for _, k := range snapshot.Kinds() {
		if !k.Daemon {
			m.changes.WithLabelValues(target, string(k.Kind))
		}
	}
	for _, r := range scanResults {
		m.scans.WithLabelValues(target, r)
	}
	m.skipped.WithLabelValues(target)
	for _, r := range svResults {
		m.svDetections.WithLabelValues(target, r)
	}
}

// Service detection results, the values of the result label of
// exposure_service_detections_total.
const (
	svKept = "kept"
	svFull = "full"
)

var svResults = [...]string{svKept, svFull}

// setLatest sets the gauges of a target from its latest complete snapshot.
func (m *metrics) setLatest(s *snapshot.Snapshot) {
	m.lastSuccess.WithLabelValues(s.Target).Set(float64(s.FinishedAt.UnixNano()) / 1e9)
	m.openPorts.WithLabelValues(s.Target).Set(float64(s.OpenPorts()))
	m.hostsUp.WithLabelValues(s.Target).Set(float64(s.HostsUp()))
}

// forget drops the per-target series of a target that left the
// configuration, so dashboards do not show it as stale forever.
func (m *metrics) forget(target string) {
	l := prometheus.Labels{"target": target}
	m.scanDuration.DeletePartialMatch(l)
	m.scans.DeletePartialMatch(l)
	m.skipped.DeletePartialMatch(l)
	m.lastSuccess.DeletePartialMatch(l)
	m.openPorts.DeletePartialMatch(l)
	m.hostsUp.DeletePartialMatch(l)
	m.changes.DeletePartialMatch(l)
	m.svDetections.DeletePartialMatch(l)
	m.probesSent.DeletePartialMatch(l)
	m.retransmits.DeletePartialMatch(l)
}
