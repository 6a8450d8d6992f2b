package scanner

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCookie(t *testing.T) {
	k1, err := newCookieKey()
	require.NoError(t, err)
	k2, err := newCookieKey()
	require.NoError(t, err)
	require.NotEqual(t, k1, k2, "a fresh random key per engine")

	l, r := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	base := k1.cookie(l, r, 61000, 80)
	require.Equal(t, base, k1.cookie(l, r, 61000, 80), "deterministic")
	require.Equal(t, base, k1.cookie(netip.MustParseAddr("::ffff:198.18.0.1"), r, 61000, 80), "mapped addresses are the same 4-tuple")
	for _, other := range []uint32{
		k1.cookie(r, l, 61000, 80),
		k1.cookie(l, r.Next(), 61000, 80),
		k1.cookie(l, r, 61001, 80),
		k1.cookie(l, r, 61000, 81),
		k2.cookie(l, r, 61000, 80),
	} {
		require.NotEqual(t, base, other)
	}

	tests := []struct {
		name  string
		r     reply
		valid bool
	}{
		{"syn-ack acks cookie+1", reply{kind: replySynAck, local: l, remote: r, localPort: 61000, remotePort: 80, ack: base + 1}, true},
		{"rst acks cookie+1", reply{kind: replyRST, local: l, remote: r, localPort: 61000, remotePort: 80, ack: base + 1}, true},
		{"syn-ack acks cookie", reply{kind: replySynAck, local: l, remote: r, localPort: 61000, remotePort: 80, ack: base}, false},
		{"syn-ack acks cookie+2", reply{kind: replySynAck, local: l, remote: r, localPort: 61000, remotePort: 80, ack: base + 2}, false},
		{"icmp quotes cookie", reply{kind: replyUnreach, local: l, remote: r, localPort: 61000, remotePort: 80, ack: base}, true},
		{"icmp quotes cookie+1", reply{kind: replyUnreach, local: l, remote: r, localPort: 61000, remotePort: 80, ack: base + 1}, false},
		{"spoofed other host", reply{kind: replySynAck, local: l, remote: r.Next(), localPort: 61000, remotePort: 80, ack: base + 1}, false},
		{"spoofed other port", reply{kind: replySynAck, local: l, remote: r, localPort: 61000, remotePort: 81, ack: base + 1}, false},
		{"other source port", reply{kind: replySynAck, local: l, remote: r, localPort: 61001, remotePort: 80, ack: k1.cookie(l, r, 61001, 80) + 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.valid, k1.valid(tt.r, 61000))
		})
	}
}
