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

// TestLabDetectorInterface: a detector bound to a lab's bridge identifies
// the lab host's service, and refuses, without a single segment reaching
// it, a host of another lab; bound to lo it reaches neither.
func TestLabDetectorInterface(t *testing.T) {
	a, b := lab.New(t), lab.New(t)
	ha, hb := a.AddHost("a"), b.AddHost("b")
	for _, h := range []*lab.Host{ha, hb} {
		_, err := h.ListenAddr(netip.AddrPortFrom(netip.IPv6Unspecified(), 2222), "SSH-2.0-OpenSSH_9.6\r\n")
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	bindA, err := netif.New(a.Interface())
	require.NoError(t, err)
	bridge, err := New(Options{Timeout: 5 * time.Second, Bind: bindA})
	require.NoError(t, err)
	segsB := hb.TCPSegmentsIn()
	for _, addr := range []netip.Addr{ha.Addr(), ha.Addr6()} {
		s, err := bridge.Detect(ctx, addr, 2222)
		require.NoError(t, err, "%v", addr)
		require.Equal(t, "OpenSSH", s.Product, "%v", addr)
	}
	for _, addr := range []netip.Addr{hb.Addr(), hb.Addr6()} {
		_, err := bridge.Detect(ctx, addr, 2222)
		require.ErrorIs(t, err, netif.ErrNoRoute, "%v", addr)
		require.ErrorContains(t, err, "no route via "+a.Interface())
	}
	require.Equal(t, segsB, hb.TCPSegmentsIn(), "the other lab's host received segments")

	bindLo, err := netif.New("lo")
	require.NoError(t, err)
	lo, err := New(Options{Timeout: 5 * time.Second, Bind: bindLo})
	require.NoError(t, err)
	segsA := ha.TCPSegmentsIn()
	for _, addr := range []netip.Addr{ha.Addr(), hb.Addr()} {
		_, err := lo.Detect(ctx, addr, 2222)
		require.ErrorIs(t, err, netif.ErrNoRoute, "%v", addr)
		require.ErrorContains(t, err, "no route via lo")
	}
	require.Equal(t, segsA, ha.TCPSegmentsIn())
	require.Equal(t, segsB, hb.TCPSegmentsIn())
}
