package netif

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// neighMsg builds an RTM_NEWNEIGH body as the kernel sends it.
func neighMsg(family uint8, index int, state uint16, dst []byte, mac []byte) []byte {
	b := make([]byte, unix.SizeofNdMsg)
	b[0] = family
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint16(b[8:], state)
	add := func(typ uint16, data []byte) {
		l := unix.SizeofRtAttr + len(data)
		a := make([]byte, (l+3)&^3)
		binary.NativeEndian.PutUint16(a[0:], uint16(l))
		binary.NativeEndian.PutUint16(a[2:], typ)
		copy(a[unix.SizeofRtAttr:], data)
		b = append(b, a...)
	}
	if dst != nil {
		add(unix.NDA_DST, dst)
	}
	if mac != nil {
		add(unix.NDA_LLADDR, mac)
	}
	return b
}

func TestParseNeighbour(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 7}
	dst := []byte{198, 18, 0, 2}
	a, m, ok := parseNeighbour(neighMsg(unix.AF_INET, 5, unix.NUD_PERMANENT, dst, mac), 5)
	require.True(t, ok)
	require.Equal(t, netip.MustParseAddr("198.18.0.2"), a)
	require.Equal(t, mac, m)
	for _, state := range []uint16{unix.NUD_REACHABLE, unix.NUD_STALE, unix.NUD_DELAY, unix.NUD_PROBE} {
		_, _, ok := parseNeighbour(neighMsg(unix.AF_INET, 5, state, dst, mac), 5)
		require.True(t, ok, "state %#x", state)
	}
	for name, b := range map[string][]byte{
		"other interface": neighMsg(unix.AF_INET, 6, unix.NUD_REACHABLE, dst, mac),
		"unresolved":      neighMsg(unix.AF_INET, 5, unix.NUD_INCOMPLETE, dst, nil),
		"failed":          neighMsg(unix.AF_INET, 5, unix.NUD_FAILED, dst, mac),
		"IPv6":            neighMsg(unix.AF_INET6, 5, unix.NUD_REACHABLE, make([]byte, 16), mac),
		"no address":      neighMsg(unix.AF_INET, 5, unix.NUD_REACHABLE, nil, mac),
		"zero MAC":        neighMsg(unix.AF_INET, 5, unix.NUD_REACHABLE, dst, make([]byte, 6)),
		"short MAC":       neighMsg(unix.AF_INET, 5, unix.NUD_REACHABLE, dst, []byte{1, 2, 3}),
		"truncated":       neighMsg(unix.AF_INET, 5, unix.NUD_REACHABLE, dst, mac)[:unix.SizeofNdMsg+6],
		"short header":    {unix.AF_INET, 0, 0},
	} {
		_, _, ok := parseNeighbour(b, 5)
		require.False(t, ok, name)
	}
}
