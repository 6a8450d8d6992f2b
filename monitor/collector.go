package monitor

import (
	"slices"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

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

	mu sync.RWMutex
	// latest holds each target's latest snapshot packed (a host 24
	// bytes, a port 8; see snapshot.Packed).
	latest map[string]*snapshot.Packed
	// series holds where the per-port series of each latest snapshot
	// are, found once when it is set rather than at every scrape.
	series map[string]*targetSeries
	budget int
}

// targetSeries are where one target's per-port series are in its
// snapshot, by kind, and how many of each kind the snapshot has. Only as
// many are listed as the series budget could ever let through (see
// build), 8 bytes each: a target of 98,304 open ports lists 10,000. The
// metrics themselves are made at each scrape (about 600 bytes a series,
// garbage once it is written) instead of living between scrapes.
type targetSeries struct {
	snap                *snapshot.Packed
	target              string
	open, info, cert    []portAt
	nOpen, nInfo, nCert int
}

// portAt is a port of a snapshot: host and port index.
type portAt struct{ host, port uint32 }

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
		latest: map[string]*snapshot.Packed{},
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
	p := snapshot.Pack(s)
	ts := c.build(p, budget)
	c.mu.Lock()
	c.latest[s.Target] = p
	c.series[s.Target] = ts
	c.mu.Unlock()
}

// get is the latest complete snapshot of target set, packed, nil for
// none. It is shared: no one changes it.
func (c *portCollector) get(target string) *snapshot.Packed {
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
	labels := newLabelPairs()
	emit := func(ts *targetSeries, at []portAt, total int, kind func(*labelPairs, *targetSeries, portAt) prometheus.Metric) {
		n := min(len(at), max(left, 0))
		for _, a := range at[:n] {
			ch <- kind(labels, ts, a)
		}
		left -= n
		dropped += total - n
	}
	for _, ts := range all {
		emit(ts, ts.open, ts.nOpen, c.portOpenMetric)
	}
	for _, ts := range all {
		emit(ts, ts.info, ts.nInfo, c.serviceInfoMetric)
	}
	for _, ts := range all {
		emit(ts, ts.cert, ts.nCert, c.certExpiryMetric)
	}
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.GaugeValue, float64(dropped))
}

// portSeries is one per-port gauge, made at a scrape (one allocation)
// from label pairs that the scrape's series share (labelPairs): a const
// metric would copy and validate every label of every series, and keep
// about 1 KB a series between scrapes.
type portSeries struct {
	desc    *prometheus.Desc
	value   float64
	gauge   dto.Gauge
	address string
	addr    dto.LabelPair
	pairs   [6]*dto.LabelPair // sorted by name, as the registry checks
	n       int
}

// newPortSeries is a series with its host's address pair first and the
// other pairs after it.
func newPortSeries(desc *prometheus.Desc, value float64, address string, rest ...*dto.LabelPair) *portSeries {
	m := &portSeries{desc: desc, value: value, address: address, n: 1 + len(rest)}
	m.addr.Name, m.addr.Value = &labelAddress, &m.address
	m.pairs[0] = &m.addr
	copy(m.pairs[1:], rest)
	return m
}

var labelAddress, labelPort = "address", "port"

func (m *portSeries) Desc() *prometheus.Desc { return m.desc }

func (m *portSeries) Write(out *dto.Metric) error {
	out.Label = m.pairs[:m.n]
	m.gauge.Value = &m.value
	out.Gauge = &m.gauge
	return nil
}

// labelPairs are one scrape's label pairs, shared by the series that
// have them: a target, protocol, port, service or product is the same
// pair in thousands of series. The registry only reads them.
type labelPairs struct {
	byValue map[[2]string]*dto.LabelPair
	ports   map[uint16]*dto.LabelPair
}

func newLabelPairs() *labelPairs {
	return &labelPairs{byValue: map[[2]string]*dto.LabelPair{}, ports: map[uint16]*dto.LabelPair{}}
}

// get is the pair of name and value; clean says the value came from the
// network (cleanLabel).
func (l *labelPairs) get(name, value string, clean bool) *dto.LabelPair {
	k := [2]string{name, value}
	if p, ok := l.byValue[k]; ok {
		return p
	}
	v := value
	if clean {
		v = cleanLabel(value)
	}
	p := &dto.LabelPair{Name: new(name), Value: &v}
	l.byValue[k] = p
	return p
}

func (l *labelPairs) port(port uint16) *dto.LabelPair {
	if p, ok := l.ports[port]; ok {
		return p
	}
	p := &dto.LabelPair{Name: &labelPort, Value: new(strconv.Itoa(int(port)))}
	l.ports[port] = p
	return p
}

// The per-port series' labels, in name order.

func (c *portCollector) portOpenMetric(l *labelPairs, ts *targetSeries, a portAt) prometheus.Metric {
	addr, p := ts.snap.Port(int(a.host), int(a.port))
	name := ""
	if sv := p.Service; sv != nil {
		name = sv.Name
		if sv.Tunnel != "" && name != "" {
			name = sv.Tunnel + "/" + name
		}
	}
	return newPortSeries(c.portOpen, 1, addr,
		l.port(p.Port), l.get("protocol", p.Protocol, false), l.get("service", name, true), l.get("target", ts.target, false))
}

func (c *portCollector) serviceInfoMetric(l *labelPairs, ts *targetSeries, a portAt) prometheus.Metric {
	addr, p := ts.snap.Port(int(a.host), int(a.port))
	return newPortSeries(c.serviceInfo, 1, addr,
		l.port(p.Port), l.get("product", p.Service.Product, true), l.get("protocol", p.Protocol, false),
		l.get("target", ts.target, false), l.get("version", p.Service.Version, true))
}

func (c *portCollector) certExpiryMetric(l *labelPairs, ts *targetSeries, a portAt) prometheus.Metric {
	addr, p := ts.snap.Port(int(a.host), int(a.port))
	return newPortSeries(c.certExpiry, float64(p.Service.Cert.NotAfter.Unix()), addr,
		l.port(p.Port), l.get("protocol", p.Protocol, false), l.get("target", ts.target, false))
}

// build makes the per-port metrics of one snapshot that a scrape under
// budget could emit: Collect emits every target's port_open series before
// any service_info, and those before any cert expiry, so of this target's
// service_info at most budget less its own port_open count can be emitted,
// and so on. The rest is only counted.
func (c *portCollector) build(s *snapshot.Packed, budget int) *targetSeries {
	ts := &targetSeries{snap: s, target: s.Head().Target}
	hasInfo := func(sv *snapshot.Service) bool { return sv != nil && (sv.Product != "" || sv.Version != "") }
	hasCert := func(sv *snapshot.Service) bool { return sv != nil && sv.Cert != nil && !sv.Cert.NotAfter.IsZero() }
	for _, h := range s.Hosts() {
		for _, p := range h.Ports {
			if p.State != snapshot.StateOpen {
				continue
			}
			ts.nOpen++
			if hasInfo(p.Service) {
				ts.nInfo++
			}
			if hasCert(p.Service) {
				ts.nCert++
			}
		}
	}
	maxOpen, maxInfo := budget, budget-ts.nOpen
	maxCert := maxInfo - ts.nInfo
	for hi, h := range s.Hosts() {
		for pi, p := range h.Ports {
			if p.State != snapshot.StateOpen {
				continue
			}
			a := portAt{uint32(hi), uint32(pi)}
			if len(ts.open) < maxOpen {
				ts.open = append(ts.open, a)
			}
			if hasInfo(p.Service) && len(ts.info) < maxInfo {
				ts.info = append(ts.info, a)
			}
			if hasCert(p.Service) && len(ts.cert) < maxCert {
				ts.cert = append(ts.cert, a)
			}
		}
	}
	ts.open, ts.info, ts.cert = slices.Clip(ts.open), slices.Clip(ts.info), slices.Clip(ts.cert)
	return ts
}

// maxLabelLen bounds label values that come from the network (product and
// version strings matched out of banners).
const maxLabelLen = 128

// cleanLabel strips control characters and bounds the length of a value
// that came from the network before it becomes a label or a log field.
func cleanLabel(s string) string { return textsafe.Clean(s, maxLabelLen) }
