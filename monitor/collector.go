package monitor

import (
	"slices"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/exposure-monitor/exposure/internal/textsafe"
	"github.com/exposure-monitor/exposure/snapshot"
)

// portCollector exports one series per open port of the latest complete
// snapshot of every target. It reads an in-memory copy that the job
// replaces after each commit, so a scrape never touches bbolt, and a port
// that closed is simply absent from the next scrape.
type portCollector struct {
	portOpen    *prometheus.Desc
	serviceInfo *prometheus.Desc
	certExpiry  *prometheus.Desc
	dropped     *prometheus.Desc

	mu     sync.RWMutex
	latest map[string]*snapshot.Snapshot
	// series holds the metrics of each latest snapshot, built once when
	// it is set rather than at every scrape.
	series map[string]*targetSeries
	budget int
}

// targetSeries are one target's per-port metrics, by kind, and how many
// of each kind the snapshot has. Only as many are built as the series
// budget could ever let through (see build): a target of 98,304 open ports
// keeps 10,000 metrics, not 200,000.
type targetSeries struct {
	portOpen, serviceInfo, certExpiry []prometheus.Metric
	nOpen, nInfo, nCert               int
}

var _ prometheus.Collector = (*portCollector)(nil)

func newPortCollector(budget int) *portCollector {
	return &portCollector{
		portOpen: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "port_open"),
			"An open port in the latest complete scan of the target.",
			[]string{"target", "address", "port", "protocol", "service"}, nil),
		serviceInfo: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "service_info"),
			"Product and version detected on an open port (value always 1).",
			[]string{"target", "address", "port", "protocol", "product", "version"}, nil),
		certExpiry: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "tls_cert_not_after_timestamp_seconds"),
			"NotAfter of the TLS leaf certificate served on an open port.",
			[]string{"target", "address", "port", "protocol"}, nil),
		dropped: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "series_dropped"),
			"Per-port series left out of this scrape because global.series_budget was reached.",
			nil, nil),
		latest: map[string]*snapshot.Snapshot{},
		series: map[string]*targetSeries{},
		budget: budget,
	}
}

// Describe implements prometheus.Collector.
func (c *portCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.portOpen
	ch <- c.serviceInfo
	ch <- c.certExpiry
	ch <- c.dropped
}

// set replaces the latest complete snapshot of a target. Incomplete
// snapshots never reach it: they would make ports vanish that were only
// not scanned.
func (c *portCollector) set(s *snapshot.Snapshot) {
	if s == nil || !s.Complete {
		return
	}
	c.mu.RLock()
	budget := c.budget
	c.mu.RUnlock()
	ts := c.build(s, budget)
	c.mu.Lock()
	c.latest[s.Target] = s
	c.series[s.Target] = ts
	c.mu.Unlock()
}

// get is the latest complete snapshot of target set, nil for none. It is
// shared: no one changes it.
func (c *portCollector) get(target string) *snapshot.Snapshot {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.latest[target]
}

// retain forgets every target not in keep.
func (c *portCollector) retain(keep map[string]bool) {
	c.mu.Lock()
	for name := range c.latest {
		if !keep[name] {
			delete(c.latest, name)
			delete(c.series, name)
		}
	}
	c.mu.Unlock()
}

// setBudget changes the series budget; a larger one rebuilds the series
// that the old one left unbuilt.
func (c *portCollector) setBudget(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	grew := n > c.budget
	c.budget = n
	if grew {
		for name, s := range c.latest {
			c.series[name] = c.build(s, n)
		}
	}
}

// Collect implements prometheus.Collector. Series are emitted in a fixed
// order (target, address, port, protocol) and kind by kind, port_open first, so that
// under a tight budget the open ports survive before the service details.
func (c *portCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	names := make([]string, 0, len(c.series))
	for name := range c.series {
		names = append(names, name)
	}
	slices.Sort(names)
	all := make([]*targetSeries, 0, len(names))
	for _, name := range names {
		all = append(all, c.series[name])
	}
	budget := c.budget
	c.mu.RUnlock()

	left, dropped := budget, 0
	emit := func(ms []prometheus.Metric, total int) {
		n := min(len(ms), max(left, 0))
		for _, m := range ms[:n] {
			ch <- m
		}
		left -= n
		dropped += total - n
	}
	for _, ts := range all {
		emit(ts.portOpen, ts.nOpen)
	}
	for _, ts := range all {
		emit(ts.serviceInfo, ts.nInfo)
	}
	for _, ts := range all {
		emit(ts.certExpiry, ts.nCert)
	}
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.GaugeValue, float64(dropped))
}

// build makes the per-port metrics of one snapshot that a scrape under
// budget could emit: Collect emits every target's port_open series before
// any service_info, and those before any cert expiry, so of this target's
// service_info at most budget less its own port_open count can be emitted,
// and so on. The rest is only counted.
func (c *portCollector) build(s *snapshot.Snapshot, budget int) *targetSeries {
	ts := &targetSeries{}
	hasInfo := func(sv *snapshot.Service) bool { return sv != nil && (sv.Product != "" || sv.Version != "") }
	hasCert := func(sv *snapshot.Service) bool { return sv != nil && sv.Cert != nil && !sv.Cert.NotAfter.IsZero() }
	s.EachOpenPort(func(_ *snapshot.Host, p *snapshot.Port) {
		ts.nOpen++
		if hasInfo(p.Service) {
			ts.nInfo++
		}
		if hasCert(p.Service) {
			ts.nCert++
		}
	})
	maxOpen, maxInfo := budget, budget-ts.nOpen
	maxCert := maxInfo - ts.nInfo
	s.EachOpenPort(func(h *snapshot.Host, p *snapshot.Port) {
		sv := p.Service
		open := len(ts.portOpen) < maxOpen
		info := hasInfo(sv) && len(ts.serviceInfo) < maxInfo
		cert := hasCert(sv) && len(ts.certExpiry) < maxCert
		if !open && !info && !cert {
			return
		}
		port := strconv.Itoa(int(p.Port))
		if open {
			name := ""
			if sv != nil {
				name = sv.Name
				if sv.Tunnel != "" && name != "" {
					name = sv.Tunnel + "/" + name
				}
			}
			ts.portOpen = append(ts.portOpen, prometheus.MustNewConstMetric(c.portOpen, prometheus.GaugeValue, 1,
				s.Target, h.Address, port, p.Protocol, cleanLabel(name)))
		}
		if info {
			ts.serviceInfo = append(ts.serviceInfo, prometheus.MustNewConstMetric(c.serviceInfo, prometheus.GaugeValue, 1,
				s.Target, h.Address, port, p.Protocol, cleanLabel(sv.Product), cleanLabel(sv.Version)))
		}
		if cert {
			ts.certExpiry = append(ts.certExpiry, prometheus.MustNewConstMetric(c.certExpiry, prometheus.GaugeValue,
				float64(sv.Cert.NotAfter.Unix()), s.Target, h.Address, port, p.Protocol))
		}
	})
	return ts
}

// maxLabelLen bounds label values that come from the network (product and
// version strings matched out of banners).
const maxLabelLen = 128

// cleanLabel strips control characters and bounds the length of a value
// that came from the network before it becomes a label or a log field.
func cleanLabel(s string) string { return textsafe.Clean(s, maxLabelLen) }
