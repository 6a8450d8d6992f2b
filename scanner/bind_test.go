package scanner

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

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
			s, err := NewSYN(SYNOptions{Limiter: rate.NewLimiter(20000, 200), Interface: iface})
			require.NoError(t, err)
			require.Equal(t, iface, s.Interface())
			return s
		}},
		{"connect", func(t *testing.T) Engine {
			c := NewConnect(ConnectOptions{Timeout: time.Second, Interface: iface})
			require.Equal(t, iface, c.Interface())
			return c
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

func TestNewEngineInterface(t *testing.T) {
	_, err := NewEngine(KindConnect, EngineOptions{Interface: "eth0:1"})
	require.ErrorContains(t, err, `"eth0:1"`)
	_, err = NewEngine(KindAuto, EngineOptions{Interface: "much-too-long-name0"})
	require.ErrorContains(t, err, "longer than 15 bytes")
	e, err := NewEngine(KindConnect, EngineOptions{Interface: "lo"})
	require.NoError(t, err)
	require.Equal(t, "lo", e.(*Connect).Interface())
	_, err = NewSYN(SYNOptions{Limiter: rate.NewLimiter(1, 1), Interface: "a b"})
	require.ErrorContains(t, err, `"a b"`)
}

// TestSweepBoundResolver: a sweep with a bound engine resolves through a
// resolver whose sockets are bound too; /etc/hosts still answers.
func TestSweepBoundResolver(t *testing.T) {
	require.Nil(t, boundResolver(NewConnect(ConnectOptions{})))
	r := boundResolver(NewConnect(ConnectOptions{Interface: "lo"}))
	require.NotNil(t, r)
	require.True(t, r.PreferGo)
	addrs, err := r.LookupNetIP(context.Background(), "ip4", "localhost")
	require.NoError(t, err)
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	require.Contains(t, addrs, netip.MustParseAddr("127.0.0.1"))
}
