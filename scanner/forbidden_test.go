package scanner

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDestGuard(t *testing.T) {
	g := &destGuard{broadcasts: map[netip.Addr]struct{}{netip.MustParseAddr("198.18.1.255"): {}}}
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1", true},
		{"198.18.0.2", true},
		{"198.18.1.254", true},
		{"::1", true},
		{"2001:2::2", true},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"0.255.255.255", false},
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"255.255.255.255", false},
		{"198.18.1.255", false}, // directed broadcast of a local network
		{"::", false},
		{"ff02::1", false},
		{"ff05::2", false},
		{"::ffff:224.0.0.1", false},
		{"::ffff:0.0.0.1", false},
		{"::ffff:255.255.255.255", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			err := g.check(netip.MustParseAddr(tt.addr))
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				require.Contains(t, err.Error(), tt.addr)
			}
		})
	}
	require.Error(t, g.check(netip.Addr{}))
}

func TestDestGuardLocalBroadcasts(t *testing.T) {
	g, err := newDestGuard()
	require.NoError(t, err)
	for b := range g.broadcasts {
		require.True(t, b.Is4())
		require.Error(t, g.check(b))
	}
	require.NoError(t, g.check(netip.MustParseAddr("127.0.0.1")))
}

// TestSYNNeverSendsForbidden runs the engine over forbidden destinations:
// each gets a "not probed" verdict and no packet is sent.
func TestSYNNeverSendsForbidden(t *testing.T) {
	s := newSYNForTest(t)
	var pairs []pairKey
	for _, a := range []string{"0.0.0.0", "0.0.0.7", "224.0.0.1", "255.255.255.255", "ff02::1", "::"} {
		pairs = append(pairs, pairKey{netip.MustParseAddr(a), 80})
	}
	got, st := scanAll(t, s, toPairs(pairs), 2)
	require.Len(t, got, len(pairs))
	for _, r := range got {
		require.Equal(t, "filtered", r.State)
		require.Contains(t, r.Reason, "not probed")
	}
	require.Zero(t, st.ProbesSent)
}
