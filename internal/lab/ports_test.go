package lab

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParsePortPlan(t *testing.T) {
	tests := []struct {
		in      string
		str     string
		wantErr string
	}{
		{"", "", ""},
		{"22,80", "22,80", ""},
		{"22, 22 ,rand:3", "22,rand:3", ""},
		{"rand:0", "", `"rand:0": want rand:N with N in 1..50`},
		{"rand:2,rand:3", "", "more than one rand:N"},
		{"0", "", `"0": not a port number 1..65535`},
		{"65536", "", `"65536": not a port number 1..65535`},
		{"http", "", `"http": not a port number 1..65535`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParsePortPlan(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.str, p.String())
		})
	}
}

func TestPortPlanPorts(t *testing.T) {
	p, err := ParsePortPlan("22,rand:3")
	require.NoError(t, err)
	distinct := map[string]bool{}
	for host := range 50 {
		ports := p.Ports(7, host)
		require.Len(t, ports, 4)
		require.Contains(t, ports, uint16(22))
		require.Equal(t, ports, p.Ports(7, host), "same seed and host, same ports")
		for i := 1; i < len(ports); i++ {
			require.Less(t, ports[i-1], ports[i], "sorted, no duplicates")
		}
		for _, q := range ports {
			require.Contains(t, top100[:], q)
		}
		distinct[netip.AddrPortFrom(netip.IPv4Unspecified(), ports[0]).String()+PortPlan{fixed: ports}.String()] = true
	}
	require.Greater(t, len(distinct), 25, "hosts get different ports")
	require.NotEqual(t, p.Ports(7, 0), p.Ports(8, 0))
}

func TestBlockAddresses(t *testing.T) {
	tests := []struct {
		k            int
		gw, first    string
		last, first6 string
	}{
		{0, "198.18.0.1", "198.18.0.2", "198.18.1.254", "2001:2::2"},
		{1, "198.18.2.1", "198.18.2.2", "198.18.3.254", "2001:2:0:1::2"},
		{127, "198.18.254.1", "198.18.254.2", "198.18.255.254", "2001:2:0:7f::2"},
		{128, "198.19.0.1", "198.19.0.2", "198.19.1.254", "2001:2:0:80::2"},
		{255, "198.19.254.1", "198.19.254.2", "198.19.255.254", "2001:2:0:ff::2"},
	}
	for _, tt := range tests {
		base4 := netip.AddrFrom4([4]byte{198, 18 + byte(tt.k/128), byte((tt.k % 128) * 2), 0})
		base6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x00, 0x02, 0, 0, 0, byte(tt.k)})
		l := &Lab{prefix4: netip.PrefixFrom(base4, 23), prefix6: netip.PrefixFrom(base6, 64)}
		require.Equal(t, tt.gw, l.Gateway().String())
		require.Equal(t, tt.first, l.hostAddr4(2).String())
		require.Equal(t, tt.last, l.hostAddr4(blockSize-2).String())
		require.Equal(t, tt.first6, l.hostAddr6(2).String())
		require.True(t, netip.MustParsePrefix("198.18.0.0/15").Contains(l.hostAddr4(blockSize-1)))
		require.True(t, netip.MustParsePrefix("2001:2::/48").Contains(l.hostAddr6(0xffff)))
	}
}

func TestParseBridgeIndex(t *testing.T) {
	for name, want := range map[string]int{"explab0": 0, "explab255": 255, "explab256": -1, "explab01": -1, "br0": -1, "explab": -1} {
		k, ok := labIndex(name)
		if want < 0 {
			require.False(t, ok, name)
			continue
		}
		require.True(t, ok, name)
		require.Equal(t, want, k)
	}
}
