package scanner

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// listenLoopback opens n listeners on addr (127.0.0.1 or ::1) and returns
// their ports; t.Skip when the address family is unavailable.
func listenLoopback(t *testing.T, addr string, n int) []uint16 {
	t.Helper()
	var ports []uint16
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
		if err != nil {
			t.Skipf("cannot listen on %s: %v", addr, err)
		}
		t.Cleanup(func() { l.Close() })
		ports = append(ports, uint16(l.Addr().(*net.TCPAddr).Port))
	}
	return ports
}

// closedPort returns a port on addr that nothing listens on.
func closedPort(t *testing.T, addr string) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	require.NoError(t, err)
	p := uint16(l.Addr().(*net.TCPAddr).Port)
	require.NoError(t, l.Close())
	return p
}

func newSYNForTest(t *testing.T) *SYN {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SYN engine needs CAP_NET_RAW (run as root)")
	}
	s, err := NewSYN(SYNOptions{Limiter: rate.NewLimiter(20000, 200)})
	require.NoError(t, err)
	return s
}

func scanAll(t *testing.T, e Engine, pairs []spec.Pair, retries int) (map[spec.Pair]Result, Stats) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[spec.Pair]Result{}
	st, err := e.Scan(ctx, Job{Pairs: spec.NewPairList(pairs), Retries: retries}, func(r Result) {
		k := spec.Pair{Addr: r.Addr, Port: r.Port}
		_, dup := got[k]
		require.False(t, dup, "two results for %v", k)
		got[k] = r
	})
	require.NoError(t, err)
	return got, st
}

func TestLoopbackEngines(t *testing.T) {
	engines := []struct {
		name string
		new  func(t *testing.T) Engine
	}{
		{"syn", func(t *testing.T) Engine { return newSYNForTest(t) }},
		{"connect", func(t *testing.T) Engine { return NewConnect(ConnectOptions{Timeout: time.Second}) }},
	}
	for _, fam := range []string{"127.0.0.1", "::1"} {
		for _, eng := range engines {
			t.Run(eng.name+"/"+fam, func(t *testing.T) {
				open := listenLoopback(t, fam, 3)
				closed := []uint16{closedPort(t, fam), closedPort(t, fam)}
				e := eng.new(t)
				addr := netip.MustParseAddr(fam)
				var pairs []spec.Pair
				for _, p := range append(append([]uint16{}, open...), closed...) {
					pairs = append(pairs, spec.Pair{Addr: addr, Port: p})
				}
				got, st := scanAll(t, e, pairs, 1)
				require.Len(t, got, len(pairs))
				for _, p := range open {
					require.Equal(t, snapshot.StateOpen, got[spec.Pair{Addr: addr, Port: p}].State, "port %d", p)
				}
				for _, p := range closed {
					require.Equal(t, snapshot.StateClosed, got[spec.Pair{Addr: addr, Port: p}].State, "port %d", p)
				}
				require.GreaterOrEqual(t, st.ProbesSent, uint64(len(pairs)))
				require.Equal(t, uint64(len(pairs)), st.Replies)
			})
		}
	}
}

// TestLabLoopbackSYNAllPorts sweeps all 65,535 ports of 127.0.0.1 through
// lo, where the kernel answers in the sender's own system call (the lab
// tests go through veth pairs and a bridge). It needs no namespace but is
// a lab test: root, and seconds of CPU, so `make lab` runs it, not -short.
func TestLabLoopbackSYNAllPorts(t *testing.T) {
	lab.Require(t)
	s := newSYNForTest(t)
	open := listenLoopback(t, "127.0.0.1", 5)
	targets, err := spec.ParseTargets([]string{"127.0.0.1"}, nil)
	require.NoError(t, err)
	ports, err := spec.ParsePorts("-")
	require.NoError(t, err)
	// Other processes may listen on loopback too, and open or close ports
	// while the sweep runs: every port reported open must have had a
	// listener just before or just after it (the kernel's own table).
	before := loopbackListeners(t)
	snap, err := Sweep(context.Background(), s, targets, SweepOptions{Target: "lo", Ports: ports, Retries: 2})
	require.NoError(t, err)
	after := loopbackListeners(t)
	require.True(t, snap.Complete)
	require.Len(t, snap.Hosts, 1)
	var got []uint16
	for _, p := range snap.Hosts[0].Ports {
		got = append(got, p.Port)
	}
	require.Subset(t, got, open)
	for _, p := range got {
		require.True(t, before[p] || after[p], "port %d reported open, but nothing listened on it", p)
	}
	require.Equal(t, uint64(65535-len(got)), snap.Quality.Closed)
}

// loopbackListeners lists the TCP ports with a listener that accepts on
// 127.0.0.1: bound to it or to 0.0.0.0 (/proc/net/tcp), or to :: or
// ::ffff:127.0.0.1 (/proc/net/tcp6; dual-stack sockets accept IPv4).
func loopbackListeners(t *testing.T) map[uint16]bool {
	t.Helper()
	out := map[uint16]bool{}
	accepts := map[string]bool{
		"0100007F": true, "00000000": true,
		"00000000000000000000000000000000": true, "0000000000000000FFFF00000100007F": true,
	}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if errors.Is(err, os.ErrNotExist) && file == "/proc/net/tcp6" {
			continue // no IPv6
		}
		require.NoError(t, err)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || f[3] != "0A" { // TCP_LISTEN
				continue
			}
			addr, port, ok := strings.Cut(f[1], ":")
			if !ok || !accepts[addr] {
				continue
			}
			n, err := strconv.ParseUint(port, 16, 16)
			require.NoError(t, err, line)
			out[uint16(n)] = true
		}
	}
	return out
}

func toPairs(ks []pairKey) []spec.Pair {
	var out []spec.Pair
	for _, k := range ks {
		out = append(out, spec.Pair{Addr: k.addr, Port: k.port})
	}
	return out
}
