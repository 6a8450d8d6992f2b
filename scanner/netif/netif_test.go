package netif

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/testnet"
)

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"lo", true},
		{"eth0", true},
		{"explab12", true},
		{"br-1.100_x", true},
		{"123456789012345", true},
		{"1234567890123456", false},
		{"", false},
		{".", false},
		{"..", false},
		{"eth0:1", false},
		{"a/b", false},
		{"eth 0", false},
		{"eth\t0", false},
		{"eth\x00", false},
		{"eth\x1b[0m", false},
		{"étoile", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckName(tt.name)
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
		})
	}
}

func TestNewNilBinding(t *testing.T) {
	b, err := New("")
	require.NoError(t, err)
	require.Nil(t, b)
	require.Equal(t, "", b.Name())
	require.NoError(t, b.Check())
	require.NoError(t, b.Route(netip.MustParseAddr("127.0.0.1")))
	_, err = New("a b")
	require.Error(t, err)
}

func TestIndex(t *testing.T) {
	lo, err := New("lo")
	require.NoError(t, err)
	idx, err := lo.Index()
	require.NoError(t, err)
	ifi, err := net.InterfaceByName("lo")
	require.NoError(t, err)
	require.Equal(t, ifi.Index, idx)

	b, err := New("nosuchif0")
	require.NoError(t, err)
	_, err = b.Index()
	require.EqualError(t, err, `interface "nosuchif0": no such network interface`)
	require.ErrorContains(t, b.Check(), `"nosuchif0": no such network interface`)
}

// TestOpen: Open binds only to an interface that exists now, New to any
// well-formed name; both bind nothing for "".
func TestOpen(t *testing.T) {
	b, err := Open("lo")
	require.NoError(t, err)
	require.Equal(t, "lo", b.Name())
	_, err = Open("nosuchif0")
	require.EqualError(t, err, `interface "nosuchif0": no such network interface`)
	_, err = Open("eth0:1")
	require.ErrorContains(t, err, "must not contain '/' or ':'")
	b, err = Open("")
	require.NoError(t, err)
	require.Nil(t, b)
}

// TestRouteViaLoopback asks the routing table (nothing is sent) which
// destinations lo reaches: loopback only. 198.18.0.1 (a benchmarking
// address) has no route via lo, whatever else routes it.
func TestRouteViaLoopback(t *testing.T) {
	b, err := New("lo")
	require.NoError(t, err)
	require.NoError(t, b.Route(netip.MustParseAddr("127.0.0.1")))
	require.NoError(t, b.Route(netip.MustParseAddr("127.3.2.1")))
	if loopback6() {
		require.NoError(t, b.Route(netip.MustParseAddr("::1")))
	}
	for _, a := range []string{"198.18.0.1", "2001:2::1"} {
		err := b.Route(netip.MustParseAddr(a))
		require.ErrorIs(t, err, ErrNoRoute, a)
		require.EqualError(t, err, "no route via lo")
		var nr *NoRouteError
		require.True(t, errors.As(err, &nr))
		require.Equal(t, netip.MustParseAddr(a), nr.Addr)
	}
}

// TestDialerBoundToLoopback connects through a dialer bound to lo: a
// loopback listener is reached, and a destination outside loopback is
// refused before connect, so no SYN is sent.
func TestDialerBoundToLoopback(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	testnet.Serve(t, l, func(net.Conn) {})
	b, err := New("lo")
	require.NoError(t, err)
	d := net.Dialer{Timeout: 2 * time.Second, Control: b.Control}
	ctx := context.Background()
	c, err := d.DialContext(ctx, "tcp", l.Addr().String())
	require.NoError(t, err)
	c.Close()

	start := time.Now()
	_, err = d.DialContext(ctx, "tcp", "198.18.0.1:80")
	require.ErrorIs(t, err, ErrNoRoute)
	require.ErrorContains(t, err, "no route via lo")
	require.Less(t, time.Since(start), time.Second, "refused before connecting, not timed out")

	// The UDP "connect" that picks a source address is refused the same way.
	_, err = d.DialContext(ctx, "udp", "198.18.0.1:9")
	require.ErrorIs(t, err, ErrNoRoute)
	u, err := d.DialContext(ctx, "udp", "127.0.0.1:9")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", u.LocalAddr().(*net.UDPAddr).IP.String())
	u.Close()

	missing, err := New("nosuchif0")
	require.NoError(t, err)
	d.Control = missing.Control
	_, err = d.DialContext(ctx, "tcp", l.Addr().String())
	require.ErrorContains(t, err, `"nosuchif0": no such network interface`)
}

func loopback6() bool {
	_, err := os.Stat("/proc/net/if_inet6")
	if err != nil {
		return false
	}
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// BenchmarkRoute is the cost of one route query (a bound scan pays it once
// per destination address).
func BenchmarkRoute(b *testing.B) {
	bl, err := New("lo")
	require.NoError(b, err)
	dst := netip.MustParseAddr("127.0.0.1")
	for b.Loop() {
		if err := bl.Route(dst); err != nil {
			b.Fatal(err)
		}
	}
}
