package monitor

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/snapshot"
)

func testSnapshot(target string, complete bool, ports ...snapshot.Port) *snapshot.Snapshot {
	return &snapshot.Snapshot{
		Target: target, ID: target + "/1", Complete: complete,
		Hosts: []snapshot.Host{{Address: "127.0.0.1", State: snapshot.HostUp, Ports: ports}},
	}
}

func openPort(port uint16, svc *snapshot.Service) snapshot.Port {
	return snapshot.Port{Port: port, Protocol: "tcp", State: snapshot.StateOpen, Service: svc}
}

func TestPortCollector(t *testing.T) {
	notAfter := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	ssh := &snapshot.Service{Name: "ssh", Product: "OpenSSH", Version: "9.2p1\x1b[31m"}
	https := &snapshot.Service{Name: "http", Product: "nginx", Tunnel: "ssl", Cert: &snapshot.Cert{NotAfter: notAfter}}
	bind9 := &snapshot.Service{Name: "domain", Product: "ISC BIND", Version: "9.18.33"}
	names := []string{"exposure_port_open", "exposure_service_info", "exposure_tls_cert_not_after_timestamp_seconds", "exposure_series_dropped"}
	tests := []struct {
		name   string
		budget int
		snaps  []*snapshot.Snapshot
		want   string
	}{
		{
			name: "all series", budget: 100,
			snaps: []*snapshot.Snapshot{
				testSnapshot("dmz", true, openPort(22, ssh), openPort(443, https),
					snapshot.Port{Port: 25, Protocol: "tcp", State: snapshot.StateFiltered}),
			},
			want: `
# HELP exposure_port_open An open port in the latest complete scan of the target.
# TYPE exposure_port_open gauge
exposure_port_open{address="127.0.0.1",port="22",protocol="tcp",service="ssh",target="dmz"} 1
exposure_port_open{address="127.0.0.1",port="443",protocol="tcp",service="ssl/http",target="dmz"} 1
# HELP exposure_service_info Product and version detected on an open port (value always 1).
# TYPE exposure_service_info gauge
exposure_service_info{address="127.0.0.1",port="22",product="OpenSSH",protocol="tcp",target="dmz",version="9.2p1 [31m"} 1
exposure_service_info{address="127.0.0.1",port="443",product="nginx",protocol="tcp",target="dmz",version=""} 1
# HELP exposure_tls_cert_not_after_timestamp_seconds NotAfter of the TLS leaf certificate served on an open port.
# TYPE exposure_tls_cert_not_after_timestamp_seconds gauge
exposure_tls_cert_not_after_timestamp_seconds{address="127.0.0.1",port="443",protocol="tcp",target="dmz"} 1.798859045e+09
# HELP exposure_series_dropped Per-port series left out of this scrape because global.series_budget was reached.
# TYPE exposure_series_dropped gauge
exposure_series_dropped 0
`,
		},
		{
			// One name server on 53/tcp and 53/udp: two series of each
			// kind, told apart by protocol (a duplicate series would fail
			// the scrape).
			name: "tcp and udp", budget: 100,
			snaps: []*snapshot.Snapshot{
				testSnapshot("dns", true, openPort(53, bind9), snapshot.Port{Port: 53, Protocol: "udp", State: snapshot.StateOpen, Service: bind9},
					snapshot.Port{Port: 161, Protocol: "udp", State: snapshot.StateOpenFiltered}),
			},
			want: `
# HELP exposure_port_open An open port in the latest complete scan of the target.
# TYPE exposure_port_open gauge
exposure_port_open{address="127.0.0.1",port="53",protocol="tcp",service="domain",target="dns"} 1
exposure_port_open{address="127.0.0.1",port="53",protocol="udp",service="domain",target="dns"} 1
# HELP exposure_service_info Product and version detected on an open port (value always 1).
# TYPE exposure_service_info gauge
exposure_service_info{address="127.0.0.1",port="53",product="ISC BIND",protocol="tcp",target="dns",version="9.18.33"} 1
exposure_service_info{address="127.0.0.1",port="53",product="ISC BIND",protocol="udp",target="dns",version="9.18.33"} 1
# HELP exposure_series_dropped Per-port series left out of this scrape because global.series_budget was reached.
# TYPE exposure_series_dropped gauge
exposure_series_dropped 0
`,
		},
		{
			name: "budget keeps open ports first", budget: 3,
			snaps: []*snapshot.Snapshot{
				testSnapshot("b", true, openPort(80, nil)),
				testSnapshot("a", true, openPort(22, ssh), openPort(443, https)),
			},
			want: `
# HELP exposure_port_open An open port in the latest complete scan of the target.
# TYPE exposure_port_open gauge
exposure_port_open{address="127.0.0.1",port="22",protocol="tcp",service="ssh",target="a"} 1
exposure_port_open{address="127.0.0.1",port="443",protocol="tcp",service="ssl/http",target="a"} 1
exposure_port_open{address="127.0.0.1",port="80",protocol="tcp",service="",target="b"} 1
# HELP exposure_series_dropped Per-port series left out of this scrape because global.series_budget was reached.
# TYPE exposure_series_dropped gauge
exposure_series_dropped 3
`,
		},
		{
			name: "budget 0 exports none", budget: 0,
			snaps: []*snapshot.Snapshot{testSnapshot("a", true, openPort(22, ssh))},
			want: `
# HELP exposure_series_dropped Per-port series left out of this scrape because global.series_budget was reached.
# TYPE exposure_series_dropped gauge
exposure_series_dropped 2
`,
		},
		{
			name: "incomplete snapshot ignored", budget: 100,
			snaps: []*snapshot.Snapshot{
				testSnapshot("a", true, openPort(22, nil)),
				testSnapshot("a", false),
			},
			want: `
# HELP exposure_port_open An open port in the latest complete scan of the target.
# TYPE exposure_port_open gauge
exposure_port_open{address="127.0.0.1",port="22",protocol="tcp",service="",target="a"} 1
# HELP exposure_series_dropped Per-port series left out of this scrape because global.series_budget was reached.
# TYPE exposure_series_dropped gauge
exposure_series_dropped 0
`,
		},
		{
			name: "closed port vanishes", budget: 100,
			snaps: []*snapshot.Snapshot{
				testSnapshot("a", true, openPort(22, nil), openPort(8080, nil)),
				testSnapshot("a", true, openPort(22, nil)),
			},
			want: `
# HELP exposure_port_open An open port in the latest complete scan of the target.
# TYPE exposure_port_open gauge
exposure_port_open{address="127.0.0.1",port="22",protocol="tcp",service="",target="a"} 1
# HELP exposure_series_dropped Per-port series left out of this scrape because global.series_budget was reached.
# TYPE exposure_series_dropped gauge
exposure_series_dropped 0
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newPortCollector(tt.budget)
			for _, s := range tt.snaps {
				c.set(s)
			}
			reg := prometheus.NewRegistry()
			require.NoError(t, reg.Register(c))
			require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(tt.want), names...))
		})
	}
}

func TestPortCollectorRetain(t *testing.T) {
	c := newPortCollector(10)
	c.set(testSnapshot("a", true, openPort(22, nil)))
	c.set(testSnapshot("b", true, openPort(22, nil)))
	c.retain(map[string]bool{"b": true})
	require.Equal(t, 2, testutil.CollectAndCount(c, "exposure_port_open", "exposure_series_dropped"))
}

func TestCleanLabel(t *testing.T) {
	tests := []struct{ in, want string }{
		{"OpenSSH", "OpenSSH"},
		{"a\nb\x00c", "a b c"},
		{strings.Repeat("x", 200), strings.Repeat("x", maxLabelLen-3) + "..."},
		{"\xff", "?"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, cleanLabel(tt.in))
	}
}

// TestPortCollectorBuildsOnlyBudget: a target's snapshot keeps only the
// series the budget could let through (the rest is counted as dropped),
// and a larger budget set later brings the others back.
func TestPortCollectorBuildsOnlyBudget(t *testing.T) {
	ssh := &snapshot.Service{Name: "ssh", Product: "OpenSSH"}
	var ports []snapshot.Port
	for p := uint16(1); p <= 50; p++ {
		ports = append(ports, openPort(p, ssh))
	}
	c := newPortCollector(20)
	c.set(testSnapshot("a", true, ports...))
	ts := c.series["a"]
	require.Len(t, ts.open, 20)
	require.Empty(t, ts.info, "no service_info can be emitted before the target's 50 port_open")
	require.Equal(t, []int{50, 50, 0}, []int{ts.nOpen, ts.nInfo, ts.nCert})
	dropped := func() float64 {
		reg := prometheus.NewRegistry()
		require.NoError(t, reg.Register(c))
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "exposure_series_dropped" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no exposure_series_dropped")
		return 0
	}
	require.Equal(t, 80.0, dropped())
	require.Equal(t, 20, testutil.CollectAndCount(c, "exposure_port_open"))

	c.setBudget(70)
	require.Equal(t, 50, testutil.CollectAndCount(c, "exposure_port_open"))
	require.Equal(t, 20, testutil.CollectAndCount(c, "exposure_service_info"))
	require.Equal(t, 30.0, dropped())
}
