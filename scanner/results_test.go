package scanner

import (
	"context"
	"net/netip"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// referenceSnapshot builds the hosts a sweep must report the plain way:
// every verdict into a map of hosts, then snapshot.Sort.
func referenceSnapshot(t *testing.T, addrs []netip.Addr, ports []uint16, verdict func(netip.Addr, uint16) string) []snapshot.Host {
	t.Helper()
	small := len(addrs)*len(ports) <= SmallScanPairs
	var s snapshot.Snapshot
	for _, a := range addrs {
		h := snapshot.Host{Address: a.String(), State: snapshot.HostDown, Ports: []snapshot.Port{}}
		for _, p := range ports {
			switch v := verdict(a, p); v {
			case snapshot.StateOpen:
				h.State = snapshot.HostUp
				h.Ports = append(h.Ports, snapshot.Port{Port: p, Protocol: "tcp", State: v})
			case snapshot.StateClosed:
				h.State = snapshot.HostUp
				h.Unlisted.TCPClosed++
			default:
				if small {
					h.Ports = append(h.Ports, snapshot.Port{Port: p, Protocol: "tcp", State: v})
				} else {
					h.Unlisted.TCPFiltered++
				}
			}
		}
		if h.State == snapshot.HostUp || small {
			s.Hosts = append(s.Hosts, h)
		}
	}
	s.Sort()
	return s.Hosts
}

func TestSweepResultsOrder(t *testing.T) {
	verdict := func(a netip.Addr, p uint16) string {
		b := a.As16()
		switch {
		case b[15]%5 == 0:
			return snapshot.StateFiltered // silent host
		case p == 80 || (p == 22 && b[15]%2 == 0):
			return snapshot.StateOpen
		case b[15]%7 == 0 && p == 443:
			return snapshot.StateFiltered
		default:
			return snapshot.StateClosed
		}
	}
	tests := []struct {
		name    string
		targets []string
		ports   []uint16
	}{
		// ::1 sorts before IPv4 in the address set, after it in a snapshot.
		{"mixed small", []string{"::1", "198.18.0.9-12", "2001:2::3"}, []uint16{22, 80, 443}},
		{"mixed large", []string{"2001:2::/120", "::1", "198.18.0.0/24", "198.18.7.3"}, []uint16{443, 22, 80}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, err := spec.ParseTargets(tt.targets, nil)
			require.NoError(t, err)
			set, err := ts.Resolve(context.Background(), nil)
			require.NoError(t, err)
			var addrs []netip.Addr
			for i := uint64(0); i < set.Len(); i++ {
				addrs = append(addrs, set.At(i))
			}
			want := referenceSnapshot(t, addrs, tt.ports, verdict)
			r, err := SweepResults(context.Background(), verdictEngine{verdict: verdict}, ts, SweepOptions{Target: "t", Ports: spec.PortsOf(tt.ports...)})
			require.NoError(t, err)
			require.Equal(t, want, r.Snapshot().Hosts)

			var streamed []snapshot.Host
			for h := range r.Hosts() {
				c := *h
				c.Ports = slices.Clone(h.Ports)
				streamed = append(streamed, c)
			}
			require.Equal(t, want, streamed)
			up, open := 0, 0
			for _, h := range want {
				if h.State == snapshot.HostUp {
					up++
				}
				for _, p := range h.Ports {
					if p.State == snapshot.StateOpen {
						open++
					}
				}
			}
			require.Equal(t, up, r.HostsUp())
			require.Equal(t, open, r.OpenPorts())
		})
	}
}

func TestIndexSetMap(t *testing.T) {
	s := indexSet{m: map[uint64]struct{}{}}
	o := indexSet{m: map[uint64]struct{}{}}
	for _, i := range []uint64{9, 1 << 40, 3, 9} {
		s.add(i)
	}
	o.add(5)
	o.add(3)
	require.Equal(t, 3, s.len())
	require.True(t, s.has(1<<40))
	require.False(t, s.has(4))
	var got []uint64
	s.union(&o, func(i uint64) bool { got = append(got, i); return true })
	require.Equal(t, []uint64{3, 5, 9, 1 << 40}, got)
}

// BenchmarkSweepMemory sweeps a /16 x 22,80 whose verdicts match the scale
// lab (80 open everywhere, 22 on even addresses) through an engine that
// answers at once, and reports the heap the results hold and the bytes per
// open port, for the compact results and for the expanded snapshot.
func BenchmarkSweepMemory(b *testing.B) {
	verdict := func(a netip.Addr, p uint16) string {
		if p == 80 || a.As4()[3]%2 == 0 {
			return snapshot.StateOpen
		}
		return snapshot.StateClosed
	}
	ts, err := spec.ParseTargets([]string{"198.18.0.0/16"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	o := SweepOptions{Target: "bench", Ports: spec.PortsOf(22, 80)}
	for _, expand := range []bool{false, true} {
		name := "Results"
		if expand {
			name = "Snapshot"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var held uint64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				r, err := SweepResults(context.Background(), verdictEngine{verdict: verdict}, ts, o)
				if err != nil {
					b.Fatal(err)
				}
				var keep any = r
				if expand {
					keep = r.Snapshot()
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				held = after.HeapAlloc - before.HeapAlloc
				runtime.KeepAlive(keep)
				if r.OpenPorts() != 98304 {
					b.Fatalf("open ports %d", r.OpenPorts())
				}
			}
			b.ReportMetric(float64(held), "heap-B")
			b.ReportMetric(float64(held)/98304, "B/open-port")
		})
	}
}

// TestResultsPackedAndWide: the 8-byte packed records and the 16-byte ones
// of address sets beyond 2^40 addresses give the same hosts.
func TestResultsPackedAndWide(t *testing.T) {
	results := []Result{
		{Addr: netip.MustParseAddr("2001:2::ffff:1"), Port: 443, State: snapshot.StateOpen},
		{Addr: netip.MustParseAddr("198.18.0.1"), Port: 65535, State: snapshot.StateOpen},
		{Addr: netip.MustParseAddr("2001:2::2"), Port: 22, State: snapshot.StateClosed},
		{Addr: netip.MustParseAddr("198.18.0.1"), Port: 1, State: snapshot.StateOpen},
		{Addr: netip.MustParseAddr("2001:2::ffff:1"), Port: 80, State: snapshot.StateOpen},
	}
	want := []snapshot.Host{
		{Address: "198.18.0.1", State: snapshot.HostUp, Ports: []snapshot.Port{
			{Port: 1, Protocol: "tcp", State: snapshot.StateOpen}, {Port: 65535, Protocol: "tcp", State: snapshot.StateOpen}}},
		{Address: "2001:2::2", State: snapshot.HostUp, Ports: []snapshot.Port{}, Unlisted: snapshot.Unlisted{TCPClosed: 1}},
		{Address: "2001:2::ffff:1", State: snapshot.HostUp, Ports: []snapshot.Port{
			{Port: 80, Protocol: "tcp", State: snapshot.StateOpen}, {Port: 443, Protocol: "tcp", State: snapshot.StateOpen}}},
	}
	for _, tt := range []struct {
		v6   string
		wide bool
	}{{"2001:2::/96", false}, {"2001:2::/80", true}} {
		ts, err := spec.ParseTargets([]string{tt.v6, "198.18.0.1"}, nil)
		require.NoError(t, err)
		set, err := ts.Resolve(context.Background(), nil)
		require.NoError(t, err)
		r := newResults(set, "tcp", false)
		require.Equal(t, tt.wide, r.ports.wide, tt.v6)
		for _, res := range results {
			r.add(res)
		}
		r.finish()
		require.Equal(t, want, r.Snapshot().Hosts, tt.v6)
		require.Equal(t, 4, r.OpenPorts())
	}
}
