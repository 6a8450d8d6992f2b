package scanner

import (
	"context"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// labRate is the packet budget of the lab tests: far above what a lab host
// needs, so the tests exercise the engine at speed.
const labRate = 200000

// newLabSYN is a SYN engine bound to l's bridge: whatever happens to the
// lab's routes, its probes cannot leave through another interface.
func newLabSYN(t *testing.T, l *lab.Lab) *SYN {
	t.Helper()
	s, err := NewSYN(SYNOptions{Limiter: rate.NewLimiter(labRate, labRate/100), Bind: bindTo(t, l.Interface())})
	require.NoError(t, err)
	return s
}

// labSweep sweeps addrs x ports and returns the snapshot, which must be
// complete.
func labSweep(t *testing.T, e Engine, addrs []netip.Addr, ports string) *snapshot.Snapshot {
	t.Helper()
	var hosts []string
	for _, a := range addrs {
		hosts = append(hosts, a.String())
	}
	targets, err := spec.ParseTargets(hosts, nil)
	require.NoError(t, err)
	ps, err := spec.ParsePorts(ports)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	snap, err := Sweep(ctx, e, targets, SweepOptions{Target: "lab", Ports: ps, Retries: 2})
	require.NoError(t, err)
	require.True(t, snap.Complete)
	t.Logf("%s: %d addresses x %q in %v: %+v", e.Name(), len(addrs), ports, time.Since(start).Round(time.Millisecond), snap.Quality)
	return snap
}

// openPorts maps each host address of snap to its sorted open ports.
func openPorts(snap *snapshot.Snapshot) map[netip.Addr][]uint16 {
	m := map[netip.Addr][]uint16{}
	for _, h := range snap.Hosts {
		a := netip.MustParseAddr(h.Address)
		for _, p := range h.Ports {
			if p.State == snapshot.StateOpen {
				m[a] = append(m[a], p.Port)
			}
		}
		slices.Sort(m[a])
	}
	return m
}

// TestLabSYNAllPorts sweeps all 65,535 ports of a lab host running real
// daemons, over IPv4 and IPv6, and must find exactly what `ss -tln` shows
// inside the namespace, edge ports included.
func TestLabSYNAllPorts(t *testing.T) {
	l := lab.New(t)
	h := l.AddHost("daemons")
	lab.StartAll(t, h)
	for _, p := range []uint16{1, 1023, 61000, 65535} {
		h.Listen(p)
	}
	truth, err := h.ListeningPorts(context.Background())
	require.NoError(t, err)
	require.Contains(t, truth, uint16(65535))

	s := newLabSYN(t, l)
	for _, a := range []netip.Addr{h.Addr(), h.Addr6()} {
		snap := labSweep(t, s, []netip.Addr{a}, "-")
		require.Len(t, snap.Hosts, 1)
		require.Equal(t, snapshot.HostUp, snap.Hosts[0].State)
		require.Equal(t, truth, openPorts(snap)[a], "open ports of %v", a)
		require.Equal(t, uint64(65535-len(truth)), snap.Quality.Closed)
		require.Zero(t, snap.Quality.Filtered)
	}
}

// TestLabSYNLossAllPorts drops 5% of the packets reaching the host: the
// result must still be exact, thanks to per-probe retransmissions.
func TestLabSYNLossAllPorts(t *testing.T) {
	l := lab.New(t)
	h := l.AddHost("lossy")
	want := []uint16{7, 22, 80, 443, 8080, 40000, 65535}
	for _, p := range want {
		h.Listen(p)
	}
	require.NoError(t, h.SetLoss(context.Background(), 0.05))
	snap := labSweep(t, newLabSYN(t, l), []netip.Addr{h.Addr()}, "-")
	require.Equal(t, want, openPorts(snap)[h.Addr()])
	require.Equal(t, uint64(65535-len(want)), snap.Quality.Closed)
	require.NotZero(t, snap.Quality.Retransmits, "5%% loss must have cost retransmissions")
}

// TestLabManyHosts scans ~250 hosts with different open ports over nmap's
// top 1,000 ports, first clean, then with 5% random loss on every host, and
// with the connect engine: every result must match the truth exactly.
func TestLabManyHosts(t *testing.T) {
	l := lab.New(t)
	hosts := l.AddHosts(250)
	plan, err := lab.ParsePortPlan("22,80,rand:3")
	require.NoError(t, err)
	const seed = 7
	want := map[netip.Addr][]uint16{}
	var addrs []netip.Addr
	for i, h := range hosts {
		ports := plan.Ports(seed, i)
		for _, p := range ports {
			h.Listen(p)
		}
		want[h.Addr()] = ports
		addrs = append(addrs, h.Addr())
	}
	// A port outside the top 1,000 must not show up.
	hosts[0].Listen(61999)

	s := newLabSYN(t, l)
	snap := labSweep(t, s, addrs, "top:1000")
	require.Equal(t, want, openPorts(snap))
	require.Equal(t, 250, snap.HostsUp())

	t.Run("5% loss", func(t *testing.T) {
		for _, h := range hosts {
			require.NoError(t, h.SetLoss(context.Background(), 0.05))
		}
		t.Cleanup(func() {
			for _, h := range hosts {
				_ = h.SetLoss(context.Background(), 0)
			}
		})
		snap := labSweep(t, s, addrs, "top:1000")
		require.Equal(t, want, openPorts(snap))
		require.NotZero(t, snap.Quality.Retransmits)
	})

	t.Run("connect engine", func(t *testing.T) {
		c := NewConnect(ConnectOptions{Concurrency: 512, Timeout: time.Second, Bind: bindTo(t, l.Interface())})
		snap := labSweep(t, c, addrs[:20], "top:1000")
		sub := map[netip.Addr][]uint16{}
		for _, a := range addrs[:20] {
			sub[a] = want[a]
		}
		require.Equal(t, sub, openPorts(snap))
		require.Equal(t, uint64(20*1000-countPorts(sub)), snap.Quality.Closed)
	})
}

func countPorts(m map[netip.Addr][]uint16) int {
	n := 0
	for _, ps := range m {
		n += len(ps)
	}
	return n
}

// TestLabFilteredAndDown checks the other verdicts: a host that drops
// everything is not up and its probes end filtered after the retries, with
// the small scan listing them.
func TestLabFilteredAndDown(t *testing.T) {
	l := lab.New(t)
	h := l.AddHost("dark")
	h.Listen(22)
	require.NoError(t, h.SetLoss(context.Background(), 1))
	s := newLabSYN(t, l)
	snap := labSweep(t, s, []netip.Addr{h.Addr()}, "22,80")
	require.Len(t, snap.Hosts, 1, "small scans list silent hosts")
	require.Equal(t, snapshot.HostDown, snap.Hosts[0].State)
	require.Equal(t, []snapshot.Port{
		{Port: 22, Protocol: "tcp", State: snapshot.StateFiltered},
		{Port: 80, Protocol: "tcp", State: snapshot.StateFiltered},
	}, snap.Hosts[0].Ports)
	require.Equal(t, uint64(6), snap.Quality.ProbesSent, "2 probes x (1 + 2 retries)")
	require.Equal(t, uint64(4), snap.Quality.Retransmits)
}

// TestLabSYNTxRing: bound to the lab's bridge, the engine sends its IPv4
// probes to hosts with a known link-layer address through the TX ring, and
// the rest through the IP socket, whose first packet makes the kernel
// resolve the address; both give exact results. A small scan gets no ring.
func TestLabSYNTxRing(t *testing.T) {
	l := lab.New(t)
	known, unknown := l.AddHost("known"), l.AddHost("unknown")
	open := []uint16{22, 443, 4444}
	for _, h := range []*lab.Host{known, unknown} {
		for _, p := range open {
			h.Listen(p)
		}
	}
	// The lab's permanent entry for unknown goes: the engine has no
	// address for it until the kernel has resolved one.
	out, err := exec.Command("ip", "neigh", "del", unknown.Addr().String(), "dev", l.Interface()).CombinedOutput()
	require.NoError(t, err, "%s", out)
	s := newLabSYN(t, l)
	var pairs []spec.Pair // enough for the rings (ringMinProbes)
	for p := uint16(1); p <= 20000; p++ {
		pairs = append(pairs, spec.Pair{Addr: known.Addr(), Port: p}, spec.Pair{Addr: unknown.Addr(), Port: p})
	}
	res, st := scanAll(t, s, pairs, 2)
	require.Len(t, res, len(pairs))
	for pair, r := range res {
		want := snapshot.StateClosed
		if slices.Contains(open, pair.Port) {
			want = snapshot.StateOpen
		}
		require.Equal(t, want, r.State, "%v", pair)
	}
	t.Logf("%+v", st)
	_, small := scanAll(t, s, pairs[:1000], 2)
	require.Zero(t, small.RingSent, "a small scan does not pay for the rings' setup")
	require.GreaterOrEqual(t, st.RingSent, uint64(20000), "every probe to the known host went through the ring")
	require.Less(t, st.RingSent, st.ProbesSent, "the first probes to the unknown host took the IP socket")
}
