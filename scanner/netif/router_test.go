package netif

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// udpSource is what the kernel picks for a UDP socket connected to dst:
// the answer the router must give.
func udpSource(t *testing.T, dst netip.Addr) netip.Addr {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
	require.NoError(t, err)
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}

func TestRouterLookup(t *testing.T) {
	r, err := NewRouter(nil)
	require.NoError(t, err)
	defer r.Close()
	dsts := []string{"127.0.0.1", "127.3.2.1"}
	if loopback6() {
		dsts = append(dsts, "::1")
	}
	for range 3 { // the socket is reused
		for _, d := range dsts {
			dst := netip.MustParseAddr(d)
			rt, err := r.Lookup(dst)
			require.NoError(t, err, d)
			require.Equal(t, udpSource(t, dst), rt.Src, d)
			require.False(t, rt.Gateway.IsValid(), "%s: loopback has no gateway", d)
		}
	}

	b, err := New("lo")
	require.NoError(t, err)
	bound, err := NewRouter(b)
	require.NoError(t, err)
	defer bound.Close()
	rt, err := bound.Lookup(netip.MustParseAddr("127.0.0.1"))
	require.NoError(t, err)
	require.Equal(t, netip.MustParseAddr("127.0.0.1"), rt.Src)
	for _, a := range []string{"198.18.0.1", "2001:2::1"} {
		_, err := bound.Lookup(netip.MustParseAddr(a))
		var nr *NoRouteError
		require.True(t, errors.As(err, &nr), "%s: %v", a, err)
		require.Equal(t, "lo", nr.Interface)
	}
}
