package service

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/snapshot"
)

// TestLabUDPServices names every real UDP daemon of lab.UDPDaemons over
// IPv4 and, where it listens there (ss -lun), IPv6, as nmap -sU -sV does:
// the service, the product where the reply carries one, and the version
// where the reply shows it, checked against the installed package
// (dpkg-query). NTPsec 1.2.2 answers no mode 6 query, not even its own
// ntpq's, so it is named from its mode 3 answer, as chrony would be.
func TestLabUDPServices(t *testing.T) {
	l := lab.New(t)
	h := l.AddHost("udpsv")
	ds := lab.StartUDP(t, h)
	bind, err := netif.New(l.Interface())
	require.NoError(t, err)
	d, err := New(Options{Intensity: DefaultIntensity, Bind: bind})
	require.NoError(t, err)
	bind9 := installed(t, `^(?:\d+:)?(.+)$`, "dpkg-query", "-W", "-f", "${Version}", "bind9")
	want := map[uint16]snapshot.Service{
		53:    {Name: "domain", Product: "ISC BIND", Version: bind9, Info: "Debian Linux"},
		69:    {Name: "tftp"},
		88:    {Name: "kerberos-sec", Product: "MIT Kerberos"},
		111:   {Name: "rpcbind", Version: "2-4", Info: "RPC #100000"},
		123:   {Name: "ntp", Product: "NTP", Version: "v4", Info: "unsynchronized"},
		137:   {Name: "netbios-ns", Product: "Samba nmbd netbios-ns", Info: "workgroup: " + lab.NmbdWorkgroup},
		161:   {Name: "snmp", Product: "net-snmp"},
		500:   {Name: "isakmp", Info: "IKEv2"},
		1194:  {Name: "openvpn", Product: "OpenVPN"},
		1812:  {Name: "radius"},
		3478:  {Name: "stun", Product: "coturn", Version: upstream(t, "coturn")},
		4500:  {Name: "isakmp", Info: "IKEv2 NAT-T"},
		11211: {Name: "memcache", Product: "Memcached", Version: upstream(t, "memcached")},
	}
	for _, dm := range ds {
		for _, p := range dm.UDPPorts {
			_, ok := want[p]
			require.True(t, ok, "daemon %s: no expectation for %d/udp", dm.Name, p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	for _, addr := range []netip.Addr{h.Addr(), h.Addr6()} {
		listening, err := h.ListeningUDPOn(ctx, addr)
		require.NoError(t, err)
		for port, w := range want {
			if !listening[port] {
				require.True(t, addr.Is6() && (port == 69 || port == 137), "%v %d/udp: no socket", addr, port)
				continue
			}
			svc, err := d.DetectUDP(ctx, addr, port)
			require.NoError(t, err)
			require.NotNil(t, svc, "%v %d/udp: nothing named", addr, port)
			require.Equal(t, w.Name, svc.Name, "%v %d/udp", addr, port)
			require.Equal(t, w.Product, svc.Product, "%v %d/udp", addr, port)
			require.Equal(t, w.Version, svc.Version, "%v %d/udp", addr, port)
			if w.Info != "" {
				require.True(t, strings.HasPrefix(svc.Info, w.Info), "%v %d/udp: info %q, want %q", addr, port, svc.Info, w.Info)
			}
			t.Logf("%v %d/udp: %s", addr, port, svc.Describe())
		}
	}
}
