package service

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/scanner/netif"
)

// TestLabUDPServices names every real UDP daemon that answers (named,
// snmpd, memcached -U) over IPv4 and IPv6 as nmap -sU -sV does, with the
// product where the reply carries one.
func TestLabUDPServices(t *testing.T) {
	l := lab.New(t)
	h := l.AddHost("udpsv")
	lab.StartUDP(t, h)
	bind, err := netif.New(l.Interface())
	require.NoError(t, err)
	d, err := New(Options{Intensity: DefaultIntensity, Bind: bind})
	require.NoError(t, err)
	want := map[uint16][2]string{53: {"domain", "ISC BIND"}, 161: {"snmp", "net-snmp"}, 11211: {"memcache", "Memcached"}}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	for _, addr := range []netip.Addr{h.Addr(), h.Addr6()} {
		for port, w := range want {
			svc, err := d.DetectUDP(ctx, addr, port)
			require.NoError(t, err)
			require.NotNil(t, svc, "%v %d/udp: nothing named", addr, port)
			require.Equal(t, w[0], svc.Name, "%v %d/udp", addr, port)
			require.Equal(t, w[1], svc.Product, "%v %d/udp", addr, port)
			require.Regexp(t, `^[0-9A-Za-z.~+_-]*$`, svc.Version, "%v %d/udp: version has stray bytes", addr, port)
			t.Logf("%v %d/udp: %s", addr, port, svc.Describe())
		}
	}
}
