package snapshot

import (
	"fmt"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// TestPackedRoundTrip: Unpack gives back the packed snapshot field for
// field, Hosts and Port read the same hosts and ports, and what hosts
// and ports share is stored once.
func TestPackedRoundTrip(t *testing.T) {
	ssh := &Service{Name: "ssh", Product: "OpenSSH", Version: "9.6", CPE: []string{"cpe:/a:openbsd:openssh:9.6"}}
	web := &Service{Name: "http", Product: "nginx", Cert: &Cert{Subject: "CN=a", NotAfter: time.Unix(1e9, 0).UTC()}}
	s := &Snapshot{
		Target: "dmz", ID: "dmz-1", Complete: true,
		StartedAt: time.Unix(100, 0).UTC(), FinishedAt: time.Unix(160, 0).UTC(),
		Quality: Quality{ProbesSent: 10, Replies: 7, Closed: 3},
	}
	for i := range 300 {
		h := Host{Address: fmt.Sprintf("198.18.%d.%d", i/256, i%256), State: HostUp, Ports: []Port{}}
		if i%3 == 0 {
			h.Ports = append(h.Ports, Port{Port: 22, Protocol: "tcp", State: StateOpen, Service: ssh})
		}
		h.Ports = append(h.Ports, Port{Port: 443, Protocol: "tcp", State: StateOpen, Service: web},
			Port{Port: 53, Protocol: "udp", State: StateOpenFiltered})
		h.Unlisted.TCPClosed = uint32(998 - i%3)
		s.Hosts = append(s.Hosts, h)
	}
	s.Hosts = append(s.Hosts,
		Host{Address: "2001:2::1", Hostname: "v6.lab", State: HostUp, Ports: []Port{}},
		Host{Address: "::ffff:198.18.0.9", State: HostDown},
		Host{Address: "fe80::1%veth0", State: HostUp, Ports: []Port{{Port: 80, Protocol: "tcp", State: StateOpen}}},
		Host{Address: "2001:0002::0001", State: HostUp, Ports: []Port{{Port: 80, Protocol: "tcp", State: StateClosed}}},
		Host{Address: "not an address", State: HostUp, Ports: []Port{}},
	)
	p := Pack(s)
	require.Equal(t, s, p.Unpack())
	head := *s
	head.Hosts = nil
	require.Equal(t, head, p.Head())
	require.Len(t, p.hostKinds, 3+5, "hosts share their kind")
	require.Len(t, p.portKinds, 3+2, "ports share their kind")
	n := 0
	for i, h := range p.Hosts() {
		require.Equal(t, s.Hosts[i], *h, "host %d", i)
		for j := range h.Ports {
			a, pt := p.Port(i, j)
			require.Equal(t, s.Hosts[i].Address, a)
			require.Equal(t, s.Hosts[i].Ports[j], pt)
		}
		n++
	}
	require.Equal(t, len(s.Hosts), n)
	require.Equal(t, len(s.Hosts), p.Len())
	require.Same(t, ssh, p.Unpack().Hosts[0].Ports[0].Service, "services are shared")

	for _, e := range []*Snapshot{{Target: "x"}, {Target: "x", Hosts: []Host{}}} {
		require.Equal(t, e, Pack(e).Unpack())
	}
}

// TestPackedSizes: a packed host is 24 bytes and a port 8, whatever the
// snapshot holds.
func TestPackedSizes(t *testing.T) {
	require.Equal(t, uintptr(24), unsafe.Sizeof(packedHost{}))
	require.Equal(t, uintptr(8), unsafe.Sizeof(packedPort{}))
}
