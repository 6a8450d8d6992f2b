package scanner

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// boundEngines builds each engine bound to iface.
func boundEngines(iface string) []struct {
	name string
	new  func(t *testing.T) Engine
} {
	return []struct {
		name string
		new  func(t *testing.T) Engine
	}{
		{"syn", func(t *testing.T) Engine {
			if os.Geteuid() != 0 {
				t.Skip("SYN engine needs CAP_NET_RAW (run as root)")
			}
			s, err := NewSYN(SYNOptions{Limiter: rate.NewLimiter(20000, 200), Bind: bindTo(t, iface)})
			require.NoError(t, err)
			return s
		}},
		{"connect", func(t *testing.T) Engine {
			return NewConnect(ConnectOptions{Timeout: time.Second, Bind: bindTo(t, iface)})
		}},
	}
}

// TestBoundToLoopback scans with every socket bound to lo: loopback ports
// are found as usual, and a destination lo does not route to is refused
// before anything is sent (the routing table is asked, nothing goes out;
// were it sent, lo would keep it on this machine anyway).
func TestBoundToLoopback(t *testing.T) {
	for _, eng := range boundEngines("lo") {
		t.Run(eng.name, func(t *testing.T) {
			open := listenLoopback(t, "127.0.0.1", 2)
			closed := closedPort(t, "127.0.0.1")
			e := eng.new(t)
			lo := netip.MustParseAddr("127.0.0.1")
			elsewhere := netip.MustParseAddr("198.18.0.0")
			pairs := []spec.Pair{{Addr: lo, Port: open[0]}, {Addr: lo, Port: open[1]}, {Addr: lo, Port: closed}, {Addr: elsewhere, Port: 80}}
			got, st := scanAll(t, e, pairs, 1)
			require.Len(t, got, len(pairs))
			require.Equal(t, snapshot.StateOpen, got[pairs[0]].State)
			require.Equal(t, snapshot.StateOpen, got[pairs[1]].State)
			require.Equal(t, snapshot.StateClosed, got[pairs[2]].State)
			require.Equal(t, Result{Addr: elsewhere, Port: 80, State: snapshot.StateFiltered, Reason: "not probed: no route via lo"}, got[pairs[3]])
			require.Equal(t, uint64(3), st.ProbesSent, "the refused destination got no probe")
			require.Equal(t, uint64(3), st.Replies)
		})
	}
}

// TestBoundToMissingInterface: an interface that does not exist when the
// scan starts fails the scan, naming it, before any probe.
func TestBoundToMissingInterface(t *testing.T) {
	for _, eng := range boundEngines("nosuchif0") {
		t.Run(eng.name, func(t *testing.T) {
			e := eng.new(t)
			n := 0
			st, err := e.Scan(context.Background(), Job{Pairs: spec.NewPairList([]spec.Pair{{Addr: netip.MustParseAddr("127.0.0.1"), Port: 22}})},
				func(Result) { n++ })
			require.ErrorContains(t, err, `interface "nosuchif0": no such network interface`)
			require.Zero(t, n)
			require.Zero(t, st.ProbesSent)
		})
	}
}

// TestNewEngineBinding: NewEngine hands its binding to the engine it
// builds: a scan bound to a missing interface fails naming it.
func TestNewEngineBinding(t *testing.T) {
	kinds := []string{KindConnect}
	if os.Geteuid() == 0 {
		kinds = append(kinds, KindSYN, KindAuto)
	}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			e, err := NewEngine(kind, EngineOptions{Bind: bindTo(t, "nosuchif0")})
			require.NoError(t, err)
			_, err = e.Scan(context.Background(), Job{Pairs: spec.NewPairList([]spec.Pair{{Addr: netip.MustParseAddr("127.0.0.1"), Port: 22}})},
				func(Result) {})
			require.ErrorContains(t, err, `interface "nosuchif0": no such network interface`)
		})
	}
}

// bindTo is the binding to the interface called name.
func bindTo(tb testing.TB, name string) *netif.Binding {
	tb.Helper()
	b, err := netif.New(name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestSweepBoundResolver: a sweep bound to an interface resolves through a
// resolver whose sockets are bound too; /etc/hosts still answers.
func TestSweepBoundResolver(t *testing.T) {
	require.Nil(t, boundResolver(nil))
	r := boundResolver(bindTo(t, "lo"))
	require.NotNil(t, r)
	require.True(t, r.PreferGo)
	addrs, err := r.LookupNetIP(context.Background(), "ip4", "localhost")
	require.NoError(t, err)
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	require.Contains(t, addrs, netip.MustParseAddr("127.0.0.1"))
}
