package lab

import (
	"context"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestScaleOptionsValidate(t *testing.T) {
	for _, tt := range []struct {
		bits    int
		wantErr string
	}{
		{16, ""},
		{23, ""},
		{15, "scale lab: prefix length /15: want /16 to /23"},
		{24, "scale lab: prefix length /24: want /16 to /23"},
	} {
		err := ScaleOptions{Bits: tt.bits}.validate()
		if tt.wantErr == "" {
			require.NoError(t, err)
		} else {
			require.EqualError(t, err, tt.wantErr)
		}
	}
}

// TestLabScale checks the scale lab's truth with real connections: 80 open
// everywhere, 22 open on even addresses and reset on odd ones, anything
// else closed; and that the prefix routes via the one gateway.
func TestLabScale(t *testing.T) {
	s := NewScale(t, 20)
	ctx := context.Background()
	require.Equal(t, 20, s.Prefix().Bits())
	require.True(t, netip.MustParsePrefix("198.18.0.0/15").Contains(s.Prefix().Addr()))
	require.False(t, s.Prefix().Contains(s.Gateway()), "the gateway lies outside the prefix")
	require.Equal(t, uint64(4096), s.Size())
	require.Equal(t, uint64(4096+2048), s.OpenCount())

	for _, i := range []uint64{0, 1, 2, 3, 1000, 4094, 4095} {
		a := s.Addr(i)
		require.NoError(t, s.CheckRoute(ctx, a))
		for _, port := range []uint16{22, 80, 23} {
			err := dial(netip.AddrPortFrom(a, port), 2*time.Second)
			if s.Open(a, port) {
				require.NoError(t, err, "%s:%d", a, port)
			} else {
				require.ErrorIs(t, err, syscall.ECONNREFUSED, "%s:%d", a, port)
			}
		}
	}
	require.True(t, s.Open(s.Addr(0), 22))
	require.False(t, s.Open(s.Addr(1), 22))

	// Outside the prefix: refused without asking the kernel.
	outside := s.Addr(s.Size())
	var re *RouteError
	require.ErrorAs(t, s.CheckRoute(ctx, outside), &re)

	// One neighbour entry on the veth, permanent, whatever was probed.
	out, err := runIP(ctx, nil, "-j", "neigh", "show", "dev", s.Interface())
	require.NoError(t, err)
	require.Contains(t, string(out), s.Gateway().String())
	require.Contains(t, string(out), "PERMANENT")
	require.NotContains(t, string(out), s.Addr(1).String())

	// Close removes the namespace, the veth and the route, and releases
	// the blocks.
	ns := s.Namespace()
	require.NoError(t, s.Close())
	_, err = os.Stat("/run/netns/" + ns)
	require.ErrorIs(t, err, os.ErrNotExist)
	ri, err := runIP(ctx, nil, "-j", "route", "get", s.Addr(5).String())
	if err == nil {
		require.NotContains(t, string(ri), s.Interface())
	}
	again := NewScale(t, 20)
	require.Equal(t, s.Prefix(), again.Prefix(), "the blocks were released")
}
