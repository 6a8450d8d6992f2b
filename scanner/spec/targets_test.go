package spec

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeDNS is a LookupFunc over a fixed table that counts its calls.
type fakeDNS struct {
	table map[string][]string
	calls map[string]int
}

func newFakeDNS(table map[string][]string) *fakeDNS {
	return &fakeDNS{table: table, calls: map[string]int{}}
}

func (f *fakeDNS) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	f.calls[host]++
	addrs, ok := f.table[host]
	if !ok {
		return nil, fmt.Errorf("lookup %s: no such host", host)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

// list expands a small set for assertions.
func list(t *testing.T, s *AddrSet) []string {
	t.Helper()
	require.Less(t, s.Len(), uint64(10000))
	out := make([]string, 0, s.Len())
	for i := range s.Len() {
		out = append(out, s.At(i).String())
	}
	return out
}

func TestParseTargetsResolve(t *testing.T) {
	dns := map[string][]string{
		"mail.example.test": {"198.18.0.2", "2001:2::2"},
		"web.example.test":  {"198.18.0.3", "198.18.0.2"},
		"mapped.test":       {"::ffff:198.18.0.9"},
		"gone.test":         {"198.18.0.1"},
	}
	tests := []struct {
		name           string
		hosts, exclude []string
		static         uint64
		want           []string
		ranges         int
	}{
		{name: "ipv4", hosts: []string{"198.18.0.1"}, static: 1, want: []string{"198.18.0.1"}, ranges: 1},
		{name: "ipv6", hosts: []string{"2001:2::1"}, static: 1, want: []string{"2001:2::1"}, ranges: 1},
		{name: "mapped v6 is v4", hosts: []string{"::ffff:198.18.0.1"}, static: 1, want: []string{"198.18.0.1"}, ranges: 1},
		{name: "cidr30", hosts: []string{"198.18.0.0/30"}, static: 4, want: []string{"198.18.0.0", "198.18.0.1", "198.18.0.2", "198.18.0.3"}, ranges: 1},
		{name: "cidr host bits masked", hosts: []string{"198.18.0.7/30"}, static: 4, want: []string{"198.18.0.4", "198.18.0.5", "198.18.0.6", "198.18.0.7"}, ranges: 1},
		{name: "cidr32", hosts: []string{"198.18.0.7/32"}, static: 1, want: []string{"198.18.0.7"}, ranges: 1},
		{name: "cidr v6", hosts: []string{"2001:2::5/126"}, static: 4, want: []string{"2001:2::4", "2001:2::5", "2001:2::6", "2001:2::7"}, ranges: 1},
		{name: "mapped cidr", hosts: []string{"::ffff:198.18.0.0/127"}, static: 2, want: []string{"198.18.0.0", "198.18.0.1"}, ranges: 1},
		{name: "last octet range", hosts: []string{"198.18.0.1-3"}, static: 3, want: []string{"198.18.0.1", "198.18.0.2", "198.18.0.3"}, ranges: 1},
		{name: "full range", hosts: []string{"198.18.0.254-198.18.1.1"}, static: 4, want: []string{"198.18.0.254", "198.18.0.255", "198.18.1.0", "198.18.1.1"}, ranges: 1},
		{name: "v6 range", hosts: []string{"2001:2::fe-2001:2::101"}, static: 4, want: []string{"2001:2::fe", "2001:2::ff", "2001:2::100", "2001:2::101"}, ranges: 1},
		{name: "one-address range", hosts: []string{"198.18.0.5-5"}, static: 1, want: []string{"198.18.0.5"}, ranges: 1},
		{name: "duplicates merged", hosts: []string{"198.18.0.1", "198.18.0.0/31", "198.18.0.1-2"}, static: 3, want: []string{"198.18.0.0", "198.18.0.1", "198.18.0.2"}, ranges: 1},
		{name: "comma list in element", hosts: []string{"198.18.0.1, 198.18.0.3"}, static: 2, want: []string{"198.18.0.1", "198.18.0.3"}, ranges: 2},
		{name: "exclude address", hosts: []string{"198.18.0.0/30"}, exclude: []string{"198.18.0.1"}, static: 3, want: []string{"198.18.0.0", "198.18.0.2", "198.18.0.3"}, ranges: 2},
		{name: "exclude range and cidr", hosts: []string{"198.18.0.0/29"}, exclude: []string{"198.18.0.0-1", "198.18.0.4/31", "198.18.0.7"}, static: 3, want: []string{"198.18.0.2", "198.18.0.3", "198.18.0.6"}, ranges: 2},
		{name: "exclude everything", hosts: []string{"198.18.0.0/30"}, exclude: []string{"198.18.0.0/24"}, static: 0, want: []string{}, ranges: 0},
		{name: "exclude outside", hosts: []string{"198.18.0.0/31"}, exclude: []string{"10.0.0.0/8", "2001:db8::/32"}, static: 2, want: []string{"198.18.0.0", "198.18.0.1"}, ranges: 1},
		{name: "mixed families sorted", hosts: []string{"2001:2::1", "198.18.0.1"}, static: 2, want: []string{"198.18.0.1", "2001:2::1"}, ranges: 2},
		{name: "hostnames", hosts: []string{"mail.example.test", "web.example.test", "198.18.0.1"}, static: 3, want: []string{"198.18.0.1", "198.18.0.2", "198.18.0.3", "2001:2::2"}, ranges: 2},
		{name: "hostname mapped", hosts: []string{"mapped.test"}, static: 1, want: []string{"198.18.0.9"}, ranges: 1},
		{name: "exclude hostname", hosts: []string{"198.18.0.0/30"}, exclude: []string{"gone.test"}, static: 4, want: []string{"198.18.0.0", "198.18.0.2", "198.18.0.3"}, ranges: 2},
		{name: "hostname case", hosts: []string{"MAIL.Example.TEST."}, static: 1, want: []string{"198.18.0.2", "2001:2::2"}, ranges: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := ParseTargets(tt.hosts, tt.exclude)
			require.NoError(t, err)
			require.Equal(t, tt.static, spec.StaticCount())
			set, err := spec.Resolve(t.Context(), newFakeDNS(dns).lookup)
			require.NoError(t, err)
			require.Equal(t, tt.want, list(t, set))
			require.Equal(t, uint64(len(tt.want)), set.Len())
			require.Equal(t, tt.ranges, set.Ranges())
			for _, a := range tt.want {
				require.True(t, set.Contains(netip.MustParseAddr(a)), a)
			}
		})
	}
}

func TestParseTargetsErrors(t *testing.T) {
	tests := []struct {
		hosts, exclude []string
		value, reason  string
	}{
		{hosts: nil, value: "", reason: "no targets"},
		{hosts: []string{""}, value: "", reason: "empty target"},
		{hosts: []string{"198.18.0.1,"}, value: "", reason: "empty target"},
		{hosts: []string{"198.18.0.256"}, value: "198.18.0.256", reason: "invalid IP address"},
		{hosts: []string{"198.18.0"}, value: "198.18.0", reason: "invalid IP address"},
		{hosts: []string{"2001:2::g"}, value: "2001:2::g", reason: "invalid IP address"},
		{hosts: []string{"fe80::1%eth0"}, value: "fe80::1%eth0", reason: "zoned addresses are not supported"},
		{hosts: []string{"198.18.0.0/33"}, value: "198.18.0.0/33", reason: "invalid CIDR prefix"},
		{hosts: []string{"198.18.0.0/"}, value: "198.18.0.0/", reason: "invalid CIDR prefix"},
		{hosts: []string{"example.test/24"}, value: "example.test/24", reason: "invalid CIDR prefix"},
		{hosts: []string{"2001:2::/129"}, value: "2001:2::/129", reason: "invalid CIDR prefix"},
		{hosts: []string{"198.18.0.20-10"}, value: "198.18.0.20-10", reason: "range end before start"},
		{hosts: []string{"198.18.1.0-198.18.0.255"}, value: "198.18.1.0-198.18.0.255", reason: "range end before start"},
		{hosts: []string{"198.18.0.1-256"}, value: "198.18.0.1-256", reason: "invalid address range"},
		{hosts: []string{"198.18.0.1-x"}, value: "198.18.0.1-x", reason: "invalid address range"},
		{hosts: []string{"198.18.0.1-"}, value: "198.18.0.1-", reason: "invalid address range"},
		{hosts: []string{"2001:2::1-5"}, value: "2001:2::1-5", reason: "invalid address range"},
		{hosts: []string{"198.18.0.1-2001:2::1"}, value: "198.18.0.1-2001:2::1", reason: "range mixes IPv4 and IPv6"},
		{hosts: []string{"-host.test"}, value: "-host.test", reason: "invalid hostname"},
		{hosts: []string{"host-.test"}, value: "host-.test", reason: "invalid hostname"},
		{hosts: []string{"under_score.test"}, value: "under_score.test", reason: "invalid hostname"},
		{hosts: []string{"a..b"}, value: "a..b", reason: "invalid hostname"},
		{hosts: []string{"http://x.test"}, value: "http://x.test", reason: "invalid CIDR prefix"},
		{hosts: []string{"198.18.0.1"}, exclude: []string{"bad_name"}, value: "bad_name", reason: "invalid hostname"},
		{hosts: []string{"198.18.0.1"}, exclude: []string{""}, value: "", reason: "empty target"},
	}
	for _, tt := range tests {
		t.Run(tt.value+"/"+tt.reason, func(t *testing.T) {
			_, err := ParseTargets(tt.hosts, tt.exclude)
			var e *Error
			require.True(t, errors.As(err, &e), "error %v", err)
			require.Equal(t, &Error{Value: tt.value, Reason: tt.reason}, e)
			require.Equal(t, strconv.Quote(tt.value)+": "+tt.reason, err.Error())
		})
	}
}

func TestHostnameLimits(t *testing.T) {
	label63 := string(make63('a'))
	_, err := ParseTargets([]string{label63 + ".test"}, nil)
	require.NoError(t, err)
	_, err = ParseTargets([]string{label63 + "a.test"}, nil)
	require.Error(t, err)
	long := label63 + "." + label63 + "." + label63 + "." + label63[:61] // 253 characters
	require.Len(t, long, 253)
	_, err = ParseTargets([]string{long}, nil)
	require.NoError(t, err)
	_, err = ParseTargets([]string{long + "a"}, nil)
	require.Error(t, err)
	for _, ok := range []string{"localhost", "web-1.example.test", "1password.test", "x", "a-b-c", "xn--bcher-kva.test"} {
		spec, err := ParseTargets([]string{ok}, nil)
		require.NoError(t, err, ok)
		require.Equal(t, []string{ok}, spec.Hostnames())
	}
}

func make63(c byte) []byte {
	b := make([]byte, 63)
	for i := range b {
		b[i] = c
	}
	return b
}

func TestStaticCount(t *testing.T) {
	tests := []struct {
		hosts, exclude []string
		want           uint64
	}{
		{hosts: []string{"10.0.0.0/8"}, want: 16777216},
		{hosts: []string{"198.18.0.0/16"}, want: 65536},
		{hosts: []string{"198.18.0.0/15", "198.18.0.0/16"}, want: 131072},
		{hosts: []string{"10.0.0.0/8"}, exclude: []string{"10.0.0.0/9"}, want: 8388608},
		{hosts: []string{"2001:2::/64"}, want: math.MaxUint64},
		{hosts: []string{"2001:2::/65"}, want: 1 << 63},
		{hosts: []string{"::/0"}, want: math.MaxUint64},
		{hosts: []string{"0.0.0.0/0"}, want: 1 << 32},
		{hosts: []string{"a.test", "b.test", "a.test", "198.18.0.0/31"}, want: 4},
		{hosts: []string{"a.test"}, exclude: []string{"a.test"}, want: 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.hosts, tt.exclude), func(t *testing.T) {
			spec, err := ParseTargets(tt.hosts, tt.exclude)
			require.NoError(t, err)
			require.Equal(t, tt.want, spec.StaticCount())
		})
	}
}

func TestResolveEveryCall(t *testing.T) {
	dns := newFakeDNS(map[string][]string{"a.test": {"198.18.0.1"}, "x.test": {"198.18.0.1"}})
	spec, err := ParseTargets([]string{"a.test"}, []string{"x.test"})
	require.NoError(t, err)
	set, err := spec.Resolve(t.Context(), dns.lookup)
	require.NoError(t, err)
	require.Zero(t, set.Len())
	dns.table["a.test"] = []string{"198.18.0.2"}
	set, err = spec.Resolve(t.Context(), dns.lookup)
	require.NoError(t, err)
	require.Equal(t, []string{"198.18.0.2"}, list(t, set))
	require.Equal(t, 2, dns.calls["a.test"])
	require.Equal(t, 2, dns.calls["x.test"])
	require.Equal(t, "a.test", set.Name(netip.MustParseAddr("198.18.0.2")))
}

func TestResolveNames(t *testing.T) {
	dns := newFakeDNS(map[string][]string{
		"a.test": {"198.18.0.1", "2001:2::1"},
		"b.test": {"198.18.0.1", "198.18.0.2"},
	})
	spec, err := ParseTargets([]string{"a.test", "b.test", "198.18.0.0/30"}, []string{"198.18.0.2"})
	require.NoError(t, err)
	set, err := spec.Resolve(t.Context(), dns.lookup)
	require.NoError(t, err)
	require.Equal(t, "a.test", set.Name(netip.MustParseAddr("198.18.0.1")))
	require.Equal(t, "a.test", set.Name(netip.MustParseAddr("::ffff:198.18.0.1")))
	require.Equal(t, "a.test", set.Name(netip.MustParseAddr("2001:2::1")))
	require.Equal(t, "", set.Name(netip.MustParseAddr("198.18.0.2")), "excluded")
	require.Equal(t, "", set.Name(netip.MustParseAddr("198.18.0.3")), "static")
	require.Equal(t, "", set.Name(netip.Addr{}))
}

func TestResolveErrors(t *testing.T) {
	dns := newFakeDNS(map[string][]string{"empty.test": {}})
	for _, tt := range []struct {
		hosts, exclude []string
		want           string
	}{
		{hosts: []string{"missing.test"}, want: "resolve missing.test: lookup missing.test: no such host"},
		{hosts: []string{"empty.test"}, want: "resolve empty.test: no addresses"},
		{hosts: []string{"198.18.0.1"}, exclude: []string{"missing.test"}, want: "resolve missing.test: lookup missing.test: no such host"},
	} {
		spec, err := ParseTargets(tt.hosts, tt.exclude)
		require.NoError(t, err)
		_, err = spec.Resolve(t.Context(), dns.lookup)
		require.EqualError(t, err, tt.want)
	}
	_, err := mustTargets(t, "empty.test").Resolve(t.Context(), dns.lookup)
	require.ErrorIs(t, err, ErrNoAddresses)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = mustTargets(t, "a.test").Resolve(ctx, dns.lookup)
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, dns.calls["a.test"])
}

func TestResolveDefaultResolver(t *testing.T) {
	// "localhost" comes from /etc/hosts through the default resolver, no network needed.
	set, err := mustTargets(t, "localhost").Resolve(t.Context(), nil)
	require.NoError(t, err)
	require.True(t, set.Contains(netip.MustParseAddr("127.0.0.1")) || set.Contains(netip.IPv6Loopback()), set.String())
	require.Equal(t, "localhost", set.Name(set.At(0)))
}

func mustTargets(t *testing.T, hosts ...string) *Targets {
	t.Helper()
	spec, err := ParseTargets(hosts, nil)
	require.NoError(t, err)
	return spec
}

func TestAddrSetLarge(t *testing.T) {
	set, err := mustTargets(t, "2001:2::/64", "198.18.0.0/15").Resolve(t.Context(), nil)
	require.NoError(t, err)
	require.Equal(t, uint64(math.MaxUint64), set.Len())
	require.Equal(t, "198.18.0.0", set.At(0).String())
	require.Equal(t, "198.19.255.255", set.At(131071).String())
	require.Equal(t, "2001:2::", set.At(131072).String())
	require.Equal(t, "2001:2::1:0:0", set.At(131072+1<<32).String())
	require.True(t, set.Contains(netip.MustParseAddr("2001:2::ffff:ffff:ffff:ffff")))
	require.False(t, set.Contains(netip.MustParseAddr("2001:2:0:1::")))
	require.Equal(t, "198.18.0.0-198.19.255.255,2001:2::-2001:2::ffff:ffff:ffff:ffff", set.String())

	all, err := mustTargets(t, "::/0").Resolve(t.Context(), nil)
	require.NoError(t, err)
	require.Equal(t, "::", all.At(0).String())
	require.True(t, all.Contains(netip.MustParseAddr("198.18.0.1")))
	require.True(t, all.Contains(netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")))
	excl, err := ParseTargets([]string{"::/0"}, []string{"::/1", "8000::/1"})
	require.NoError(t, err)
	require.Zero(t, excl.StaticCount())
}

func TestAddrSetOf(t *testing.T) {
	s := AddrSetOf(netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("::ffff:198.18.0.1"), netip.Addr{}, netip.MustParseAddr("fe80::1%eth0"))
	require.Equal(t, []string{"198.18.0.1", "198.18.0.2", "fe80::1"}, list(t, s))
	var nilSet *AddrSet
	require.Zero(t, nilSet.Len())
	require.False(t, nilSet.Contains(netip.MustParseAddr("198.18.0.1")))
	require.Equal(t, "", nilSet.Name(netip.MustParseAddr("198.18.0.1")))
	require.Panics(t, func() { s.At(3) })
}

// TestAddrSetStringSplitsFamilies: a range that runs across the IPv4 block (::ffff:0:0/96) is
// written as one range per family, and the text parses back to the same set.
func TestAddrSetStringSplitsFamilies(t *testing.T) {
	for _, c := range []struct{ hosts, exclude, want string }{
		{"::/0", "198.18.0.44",
			"::-::fffe:ffff:ffff,0.0.0.0-198.18.0.43,198.18.0.45-255.255.255.255,::1:0:0:0-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		{"::ffff:0:0/95", "", "::fffe:0:0-::fffe:ffff:ffff,0.0.0.0-255.255.255.255"},
		{"198.18.0.0/31", "", "198.18.0.0-198.18.0.1"},
	} {
		var excl []string
		if c.exclude != "" {
			excl = []string{c.exclude}
		}
		spec, err := ParseTargets([]string{c.hosts}, excl)
		if err != nil {
			t.Fatal(err)
		}
		set, err := spec.Resolve(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := set.String(); got != c.want {
			t.Errorf("%s minus %q: String() = %q, want %q", c.hosts, c.exclude, got, c.want)
		}
		again, err := ParseTargets(strings.Split(set.String(), ","), nil)
		if err != nil {
			t.Fatalf("%q does not parse back: %v", set.String(), err)
		}
		set2, err := again.Resolve(t.Context(), nil)
		if err != nil || set2.String() != set.String() || set2.Len() != set.Len() {
			t.Errorf("round trip %q -> %q (%v)", set.String(), set2.String(), err)
		}
	}
}
