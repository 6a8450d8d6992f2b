package monitor

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

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
	budget int
}

var _ prometheus.Collector = (*portCollector)(nil)

func newPortCollector(budget int) *portCollector {
	return &portCollector{
		portOpen: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "port_open"),
			"An open port in the latest complete scan of the target.",
			[]string{"target", "address", "port", "protocol", "service"}, nil),
		serviceInfo: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "service_info"),
			"Product and version detected on an open port (value always 1).",
			[]string{"target", "address", "port", "product", "version"}, nil),
		certExpiry: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "tls_cert_not_after_timestamp_seconds"),
			"NotAfter of the TLS leaf certificate served on an open port.",
			[]string{"target", "address", "port"}, nil),
		dropped: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "series_dropped"),
			"Per-port series left out of this scrape because global.series_budget was reached.",
			nil, nil),
		latest: map[string]*snapshot.Snapshot{},
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
	c.mu.Lock()
	c.latest[s.Target] = s
	c.mu.Unlock()
}

// retain forgets every target not in keep.
func (c *portCollector) retain(keep map[string]bool) {
	c.mu.Lock()
	for name := range c.latest {
		if !keep[name] {
			delete(c.latest, name)
		}
	}
	c.mu.Unlock()
}

func (c *portCollector) setBudget(n int) {
	c.mu.Lock()
	c.budget = n
	c.mu.Unlock()
}

// Collect implements prometheus.Collector. Series are emitted in a fixed
// order (target, address, port) and kind by kind, port_open first, so that
// under a tight budget the open ports survive before the service details.
func (c *portCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	names := make([]string, 0, len(c.latest))
	for name := range c.latest {
		names = append(names, name)
	}
	snaps := make([]*snapshot.Snapshot, 0, len(names))
	slices.Sort(names)
	for _, name := range names {
		snaps = append(snaps, c.latest[name])
	}
	budget := c.budget
	c.mu.RUnlock()

	left, dropped := budget, 0
	emit := func(m prometheus.Metric) {
		if budget > 0 && left <= 0 {
			dropped++
			return
		}
		left--
		ch <- m
	}
	each := func(fn func(target string, h *snapshot.Host, p *snapshot.Port)) {
		for _, s := range snaps {
			for i := range s.Hosts {
				h := &s.Hosts[i]
				for j := range h.Ports {
					if h.Ports[j].State == snapshot.StateOpen {
						fn(s.Target, h, &h.Ports[j])
					}
				}
			}
		}
	}
	each(func(target string, h *snapshot.Host, p *snapshot.Port) {
		name := ""
		if p.Service != nil {
			name = p.Service.Name
			if p.Service.Tunnel != "" && name != "" {
				name = p.Service.Tunnel + "/" + name
			}
		}
		emit(prometheus.MustNewConstMetric(c.portOpen, prometheus.GaugeValue, 1,
			target, h.Address, strconv.Itoa(int(p.Port)), p.Protocol, cleanLabel(name)))
	})
	each(func(target string, h *snapshot.Host, p *snapshot.Port) {
		if p.Service == nil || (p.Service.Product == "" && p.Service.Version == "") {
			return
		}
		emit(prometheus.MustNewConstMetric(c.serviceInfo, prometheus.GaugeValue, 1,
			target, h.Address, strconv.Itoa(int(p.Port)), cleanLabel(p.Service.Product), cleanLabel(p.Service.Version)))
	})
	each(func(target string, h *snapshot.Host, p *snapshot.Port) {
		if p.Service == nil || p.Service.Cert == nil || p.Service.Cert.NotAfter.IsZero() {
			return
		}
		emit(prometheus.MustNewConstMetric(c.certExpiry, prometheus.GaugeValue,
			float64(p.Service.Cert.NotAfter.Unix()), target, h.Address, strconv.Itoa(int(p.Port))))
	})
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.GaugeValue, float64(dropped))
}

// maxLabelLen bounds label values that come from the network (product and
// version strings matched out of banners).
const maxLabelLen = 128

// cleanLabel strips control characters and bounds the length of a value
// that came from the network before it becomes a label or a log field.
func cleanLabel(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n >= maxLabelLen {
			b.WriteString("...")
			break
		}
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
