package spec

import (
	"context"
	"math"
	"net/netip"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// setOfN returns a set of n addresses starting at 198.18.0.0, in two ranges when n > 1 so that At
// crosses a range boundary.
func setOfN(t *testing.T, n int) *AddrSet {
	t.Helper()
	if n == 0 {
		return AddrSetOf()
	}
	addrs := make([]netip.Addr, 0, n)
	a := netip.MustParseAddr("198.18.0.0")
	for i := range n {
		if i == n/2 {
			a = a.Next() // a gap, so the set has two ranges
		}
		addrs = append(addrs, a)
		a = a.Next()
	}
	return AddrSetOf(addrs...)
}

func portsOfN(n int) Ports {
	ports := make([]uint16, 0, n)
	for i := range n {
		ports = append(ports, uint16(1+3*i)) // non-adjacent: n ranges
	}
	return PortsOf(ports...)
}

func TestOrderEveryPairOnce(t *testing.T) {
	sizes := []struct{ addrs, ports int }{
		{1, 1}, {1, 2}, {2, 1}, {1, 3}, {3, 1}, {2, 2}, {3, 3}, {1, 7}, {7, 1}, {13, 1}, {1, 13},
		{4, 4}, {8, 8}, {16, 1}, {1, 16}, {17, 3}, {31, 1}, {5, 13}, {64, 64}, {97, 5}, {254, 3},
		{1, 1000}, {1024, 1}, {1025, 1},
	}
	for _, seq := range []bool{false, true} {
		for _, sz := range sizes {
			for _, seed := range []uint64{1, 2, 0xdeadbeef, 0} {
				a, p := setOfN(t, sz.addrs), portsOfN(sz.ports)
				o := NewOrder(a, p, OrderOptions{Sequential: seq, Seed: seed})
				n := uint64(sz.addrs * sz.ports)
				require.Equal(t, n, o.Len())
				seen := make(map[Pair]bool, n)
				for {
					addr, port, ok := o.Next()
					if !ok {
						break
					}
					require.True(t, a.Contains(addr), "%v not in set", addr)
					require.True(t, p.Contains(port), "%d not in ports", port)
					pair := Pair{addr, port}
					require.False(t, seen[pair], "%v seen twice (size %v seed %d)", pair, sz, seed)
					seen[pair] = true
					require.LessOrEqual(t, uint64(len(seen)), n)
				}
				require.Len(t, seen, int(n), "size %v seed %d sequential %v", sz, seed, seq)
				require.Equal(t, n, o.Done())
				_, _, ok := o.Next()
				require.False(t, ok, "Next after the end")
			}
		}
	}
}

func TestOrderEmpty(t *testing.T) {
	for _, o := range []*Order{
		NewOrder(nil, portsOfN(3), OrderOptions{}),
		NewOrder(setOfN(t, 3), Ports{}, OrderOptions{}),
		NewOrder(setOfN(t, 0), Ports{}, OrderOptions{Sequential: true}),
	} {
		require.Zero(t, o.Len())
		_, _, ok := o.Next()
		require.False(t, ok)
	}
}

func TestOrderSequential(t *testing.T) {
	a := setOfN(t, 3)
	p := PortsOf(22, 80)
	o := NewOrder(a, p, OrderOptions{Sequential: true})
	var got []string
	for addr, port, ok := o.Next(); ok; addr, port, ok = o.Next() {
		got = append(got, netip.AddrPortFrom(addr, port).String())
	}
	require.Equal(t, []string{
		"198.18.0.0:22", "198.18.0.0:80",
		"198.18.0.2:22", "198.18.0.2:80",
		"198.18.0.3:22", "198.18.0.3:80",
	}, got)
}

func collect(o *Order) []Pair {
	var out []Pair
	for addr, port, ok := o.Next(); ok; addr, port, ok = o.Next() {
		out = append(out, Pair{addr, port})
	}
	return out
}

func TestOrderSeed(t *testing.T) {
	a, p := setOfN(t, 50), portsOfN(20)
	one := collect(NewOrder(a, p, OrderOptions{Seed: 42}))
	require.Equal(t, one, collect(NewOrder(a, p, OrderOptions{Seed: 42})), "same seed, same order")
	require.NotEqual(t, one, collect(NewOrder(a, p, OrderOptions{Seed: 43})), "other seed, other order")
	require.NotEqual(t, collect(NewOrder(a, p, OrderOptions{})), collect(NewOrder(a, p, OrderOptions{})), "seed 0 draws a random seed")
	require.NotEqual(t, collect(NewOrder(a, p, OrderOptions{Sequential: true})), one, "random is not sequential")
}

// TestOrderSpread checks that a random order spreads probes over hosts: for 254 addresses x 1,000
// ports a fair shuffle puts the same address back-to-back about 1/254 (0.4%) of the time; a
// sequential or port-major walk would do so ~100% or 0% and a poor permutation far more often.
func TestOrderSpread(t *testing.T) {
	a, err := mustTargets(t, "198.18.0.1-254").Resolve(t.Context(), nil)
	require.NoError(t, err)
	p, err := ParsePorts("top:1000")
	require.NoError(t, err)
	for _, seed := range []uint64{1, 7, 1 << 40} {
		o := NewOrder(a, p, OrderOptions{Seed: seed})
		var prev netip.Addr
		same, total := 0, 0
		firstHalf := 0
		for addr, _, ok := o.Next(); ok; addr, _, ok = o.Next() {
			if addr == prev {
				same++
			}
			if total < int(o.Len()/2) && addr.As4()[3] <= 127 {
				firstHalf++
			}
			prev = addr
			total++
		}
		require.Equal(t, 254000, total)
		t.Logf("seed %d: same address back-to-back %d of %d (%.2f%%)", seed, same, total, 100*float64(same)/float64(total))
		require.Less(t, float64(same)/float64(total), 0.01, "seed %d: %d of %d back-to-back", seed, same, total)
		// The first half of the walk should touch the lower half of the addresses about half the
		// time (127/254 of 127,000 pairs), not all at once.
		require.InDelta(t, 63500, firstHalf, 2000, "seed %d", seed)
	}
}

// TestOrderHuge walks the start of orders whose pair count does not fit in a uint64.
func TestOrderHuge(t *testing.T) {
	set, err := mustTargets(t, "2001:2::/64", "198.18.0.0/15").Resolve(t.Context(), nil)
	require.NoError(t, err)
	for _, seq := range []bool{false, true} {
		o := NewOrder(set, AllPorts(), OrderOptions{Seed: 5, Sequential: seq})
		require.Equal(t, uint64(math.MaxUint64), o.Len())
		seen := map[Pair]bool{}
		for range 10_000 {
			addr, port, ok := o.Next()
			require.True(t, ok)
			require.True(t, set.Contains(addr), addr)
			require.NotZero(t, port)
			require.False(t, seen[Pair{addr, port}])
			seen[Pair{addr, port}] = true
		}
	}
}

func TestPairList(t *testing.T) {
	pairs := []Pair{{netip.MustParseAddr("198.18.0.1"), 22}, {netip.MustParseAddr("2001:2::1"), 443}}
	l := NewPairList(pairs)
	pairs[0].Port = 1 // the list keeps its own copy
	require.Equal(t, uint64(2), l.Len())
	addr, port, ok := l.Next()
	require.True(t, ok)
	require.Equal(t, Pair{netip.MustParseAddr("198.18.0.1"), 22}, Pair{addr, port})
	addr, port, ok = l.Next()
	require.True(t, ok)
	require.Equal(t, Pair{netip.MustParseAddr("2001:2::1"), 443}, Pair{addr, port})
	_, _, ok = l.Next()
	require.False(t, ok)
	_, _, ok = NewPairList(nil).Next()
	require.False(t, ok)
}

// orderCost resolves hosts, builds an Order with every port and walks steps pairs of it. It returns
// the allocations and bytes allocated by NewOrder plus the walk.
func orderCost(t *testing.T, hosts string, steps int) (allocs float64, bytes uint64) {
	t.Helper()
	set, err := mustTargets(t, hosts).Resolve(t.Context(), nil)
	require.NoError(t, err)
	ports := AllPorts()
	// TotalAlloc also counts what the runtime and testing allocate meanwhile; the minimum over a few
	// runs filters that noise out.
	bytes = math.MaxUint64
	for range 5 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		o := NewOrder(set, ports, OrderOptions{Seed: 1})
		for range steps {
			if _, _, ok := o.Next(); !ok {
				break
			}
		}
		runtime.ReadMemStats(&after)
		bytes = min(bytes, after.TotalAlloc-before.TotalAlloc)
	}
	allocs = testing.AllocsPerRun(3, func() {
		o := NewOrder(set, ports, OrderOptions{Seed: 1})
		for range steps {
			if _, _, ok := o.Next(); !ok {
				break
			}
		}
	})
	return allocs, bytes
}

// TestOrderMemoryIndependentOfSize proves that enumerating a /16 x 65,535 ports (4.3 billion pairs)
// costs the same memory as a /30 x 65,535: one allocation for the Order and none per pair.
func TestOrderMemoryIndependentOfSize(t *testing.T) {
	const steps = 100_000
	small, smallBytes := orderCost(t, "198.18.0.0/30", steps)
	large, largeBytes := orderCost(t, "198.18.0.0/16", steps)
	t.Logf("/30 x 65535: %.0f allocs, %d bytes; /16 x 65535: %.0f allocs, %d bytes (%d pairs walked)",
		small, smallBytes, large, largeBytes, steps)
	require.Equal(t, float64(1), small)
	require.Equal(t, small, large)
	require.Equal(t, smallBytes, largeBytes)
	require.Less(t, largeBytes, uint64(1024))

	// The address set itself is ranges, not a list: both are one range.
	for _, hosts := range []string{"198.18.0.0/30", "198.18.0.0/16", "2001:2::/64"} {
		set, err := mustTargets(t, hosts).Resolve(t.Context(), nil)
		require.NoError(t, err)
		require.Equal(t, 1, set.Ranges(), hosts)
	}
	resolveAllocs := func(hosts string) float64 {
		spec := mustTargets(t, hosts)
		return testing.AllocsPerRun(10, func() {
			if _, err := spec.Resolve(t.Context(), nil); err != nil {
				panic(err)
			}
		})
	}
	require.Equal(t, resolveAllocs("198.18.0.0/30"), resolveAllocs("198.18.0.0/16"))
}

func BenchmarkOrderNext(b *testing.B) {
	for _, bc := range []struct {
		name  string
		hosts string
		seq   bool
	}{
		{"random/16x65535", "198.18.0.0/16", false},
		{"random/24x65535", "198.18.0.0/24", false},
		{"sequential/16x65535", "198.18.0.0/16", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			spec, err := ParseTargets([]string{bc.hosts}, nil)
			require.NoError(b, err)
			set, err := spec.Resolve(b.Context(), nil)
			require.NoError(b, err)
			o := NewOrder(set, AllPorts(), OrderOptions{Seed: 1, Sequential: bc.seq})
			b.ReportAllocs()
			for b.Loop() {
				if _, _, ok := o.Next(); !ok {
					b.Fatal("order exhausted")
				}
			}
		})
	}
	b.Run("random/top1000x254", func(b *testing.B) {
		spec, err := ParseTargets([]string{"198.18.0.1-254"}, nil)
		require.NoError(b, err)
		set, err := spec.Resolve(b.Context(), nil)
		require.NoError(b, err)
		ports, err := ParsePorts("top:1000")
		require.NoError(b, err)
		o := NewOrder(set, ports, OrderOptions{Seed: 1})
		b.ReportAllocs()
		for b.Loop() {
			if _, _, ok := o.Next(); !ok {
				o = NewOrder(set, ports, OrderOptions{Seed: 1})
			}
		}
	})
}

func BenchmarkParsePorts(b *testing.B) {
	for _, s := range []string{"22,80,443", "1-65535", "top:1000", "top:100,8080-8090"} {
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParsePorts(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestAddrSetIndex(t *testing.T) {
	ts, err := ParseTargets([]string{"198.18.0.250-198.18.1.3", "198.18.2.0/30", "2001:2::/126", "::1"}, []string{"198.18.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ts.Resolve(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < s.Len(); i++ {
		a := s.At(i)
		got, ok := s.Index(a)
		if !ok || got != i {
			t.Fatalf("Index(At(%d) = %s) = %d, %v", i, a, got, ok)
		}
	}
	for _, a := range []string{"198.18.0.249", "198.18.1.4", "198.18.2.1", "2001:2::4", "::2", "10.0.0.1"} {
		if i, ok := s.Index(netip.MustParseAddr(a)); ok {
			t.Errorf("Index(%s) = %d, true; want not in the set", a, i)
		}
	}
	if i, ok := s.Index(netip.MustParseAddr("::ffff:198.18.0.251")); !ok || s.At(i) != netip.MustParseAddr("198.18.0.251") {
		t.Errorf("Index of a mapped address = %d, %v", i, ok)
	}
}
