package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func dial(ap netip.AddrPort, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", ap.String(), timeout)
	if err != nil {
		return err
	}
	return c.Close()
}

func TestLabListen(t *testing.T) {
	l := New(t)
	start := time.Now()
	a := l.AddHost("a")
	t.Logf("one host: %v", time.Since(start))
	b := l.AddHost("b")
	require.True(t, l.Prefix().Contains(a.Addr()))
	require.True(t, l.Prefix6().Contains(a.Addr6()))
	require.NotEqual(t, a.Addr(), b.Addr())

	a.Listen(8080)
	for _, addr := range []netip.Addr{a.Addr(), a.Addr6()} {
		require.NoError(t, dial(netip.AddrPortFrom(addr, 8080), 2*time.Second), "open port on %s", addr)
		err := dial(netip.AddrPortFrom(addr, 8081), 2*time.Second)
		require.ErrorIs(t, err, syscall.ECONNREFUSED, "closed port on %s", addr)
	}
	// b is a different host: a's listener is not there.
	require.ErrorIs(t, dial(netip.AddrPortFrom(b.Addr(), 8080), 2*time.Second), syscall.ECONNREFUSED)

	ports, err := a.ListeningPorts(context.Background())
	require.NoError(t, err)
	require.Equal(t, []uint16{8080}, ports)

	require.NoError(t, a.Close(8080))
	require.ErrorIs(t, dial(netip.AddrPortFrom(a.Addr(), 8080), 2*time.Second), syscall.ECONNREFUSED)
	require.Error(t, a.Close(8080), "closing twice")

	// The listening threads went back to the root namespace: a listener the
	// test opens itself is still in the root namespace.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, dial(netip.MustParseAddrPort(ln.Addr().String()), time.Second))
	ln.Close()
}

func TestLabListenAddrBanner(t *testing.T) {
	l := New(t)
	h := l.AddHost("banner")
	_, err := h.ListenAddr(netip.AddrPortFrom(h.Addr6(), 2222), "SSH-2.0-lab\r\n")
	require.NoError(t, err)
	c, err := net.DialTimeout("tcp", netip.AddrPortFrom(h.Addr6(), 2222).String(), 2*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "SSH-2.0-lab\r\n", line)
	// Bound to IPv6 only.
	require.ErrorIs(t, dial(netip.AddrPortFrom(h.Addr(), 2222), 2*time.Second), syscall.ECONNREFUSED)

	_, err = h.ListenAddr(netip.MustParseAddrPort("198.51.100.7:80"), "")
	require.ErrorContains(t, err, "not one of the host's addresses")
}

func TestLabRouteCheck(t *testing.T) {
	l := New(t)
	h := l.AddHost("r")
	ctx := context.Background()
	otherBlock := netip.AddrFrom4([4]byte{198, 18, byte((l.Index() + 1) % 128 * 2), 10})
	if l.Index() >= 127 {
		otherBlock = netip.MustParseAddr("198.18.0.10")
	}
	unused := l.hostAddr4(300) // in the block, no host: still routes to the bridge
	tests := []struct {
		name   string
		addr   netip.Addr
		reason string // "" = allowed
	}{
		{"lab host", h.Addr(), ""},
		{"lab host v6", h.Addr6(), ""},
		{"unused lab address", unused, ""},
		{"loopback", netip.MustParseAddr("127.0.0.1"), ""},
		{"loopback v6", netip.IPv6Loopback(), ""},
		{"public", netip.MustParseAddr("8.8.8.8"), "outside the lab's blocks"},
		{"public v6", netip.MustParseAddr("2001:4860:4860::8888"), "outside the lab's blocks"},
		{"other lab block", otherBlock, "outside the lab's blocks"},
		{"local network", netip.MustParseAddr("192.0.2.1"), "outside the lab's blocks"},
		{"v4-mapped public", netip.MustParseAddr("::ffff:8.8.8.8"), "outside the lab's blocks"},
		{"invalid", netip.Addr{}, "invalid address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := l.CheckRoute(ctx, tt.addr)
			if tt.reason == "" {
				require.NoError(t, err)
				return
			}
			var re *RouteError
			require.ErrorAs(t, err, &re)
			require.Contains(t, re.Reason, tt.reason)
		})
	}

	// An address of the block whose route the kernel sends elsewhere (here
	// to lo, so nothing can leave even by mistake) is refused on what
	// `ip route get` says.
	diverted := l.hostAddr4(400)
	_, err := runIP(ctx, nil, "route", "add", diverted.String()+"/32", "dev", "lo")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = runIP(context.Background(), nil, "route", "del", diverted.String()+"/32", "dev", "lo") })
	err = l.CheckRoute(ctx, diverted)
	var re *RouteError
	require.ErrorAs(t, err, &re)
	require.Contains(t, re.Reason, "does not route into lab bridge")
	require.Contains(t, re.Route, `"dev":"lo"`)
	// A failing `ip route get` is a refusal too.
	_, err = runIP(ctx, nil, "route", "add", "blackhole", diverted.String()+"/32", "metric", "1")
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = runIP(context.Background(), nil, "route", "del", "blackhole", diverted.String()+"/32", "metric", "1")
	})
	require.ErrorAs(t, l.CheckRoute(ctx, diverted), &re)

	targets, err := l.Targets(ctx)
	require.NoError(t, err)
	require.Equal(t, []netip.Addr{h.Addr(), h.Addr6()}, targets)
}

func TestLabLoss(t *testing.T) {
	l := New(t)
	h := l.AddHost("lossy")
	h.Listen(9000)
	ctx := context.Background()

	// A dropped SYN is retransmitted after a second, so an 800ms dial fails;
	// without loss, 800ms is plenty for a handshake on a veth (neighbour
	// resolution is done by the warm-up dials below).
	connects := func(addr netip.Addr, n int) (failed int) {
		var wg sync.WaitGroup
		var f atomic.Int32
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if dial(netip.AddrPortFrom(addr, 9000), 800*time.Millisecond) != nil {
					f.Add(1)
				}
			}()
		}
		wg.Wait()
		return int(f.Load())
	}
	for _, addr := range []netip.Addr{h.Addr(), h.Addr6()} {
		require.NoError(t, dial(netip.AddrPortFrom(addr, 9000), 5*time.Second), "warm-up")
	}
	require.Zero(t, connects(h.Addr(), 20), "no loss yet")

	require.NoError(t, h.SetLoss(ctx, 0.5))
	for _, addr := range []netip.Addr{h.Addr(), h.Addr6()} {
		failed := connects(addr, 60)
		t.Logf("%s: %d of 60 connects failed at 50%% loss", addr, failed)
		require.Greater(t, failed, 0, "some connects must fail")
		require.Less(t, failed, 60, "some connects must succeed")
	}

	require.NoError(t, h.SetLoss(ctx, 0.2))
	require.NoError(t, h.SetLoss(ctx, 0))
	require.Zero(t, connects(h.Addr(), 20), "loss removed")
	require.Zero(t, connects(h.Addr6(), 20), "loss removed")
	require.Error(t, h.SetLoss(ctx, 1.5))
}

func TestLabFilter(t *testing.T) {
	l := New(t)
	h := l.AddHost("fw")
	ctx := context.Background()
	h.Listen(8080)
	h.Listen(8081)
	require.NoError(t, h.Filter(ctx, 8081, 8082))
	require.NoError(t, h.SetLoss(ctx, 0)) // loss rules leave filters alone
	for _, addr := range []netip.Addr{h.Addr(), h.Addr6()} {
		require.NoError(t, dial(netip.AddrPortFrom(addr, 8080), 2*time.Second), "open")
		for _, p := range []uint16{8081, 8082} {
			err := dial(netip.AddrPortFrom(addr, p), 500*time.Millisecond)
			var ne net.Error
			require.ErrorAs(t, err, &ne, "filtered port %d on %s", p, addr)
			require.True(t, ne.Timeout(), "filtered port %d on %s times out: %v", p, addr, err)
		}
		require.ErrorIs(t, dial(netip.AddrPortFrom(addr, 8083), 2*time.Second), syscall.ECONNREFUSED, "closed")
	}
	require.NoError(t, h.Filter(ctx))
	require.NoError(t, dial(netip.AddrPortFrom(h.Addr(), 8081), 2*time.Second), "filter removed")
}

func TestLabExec(t *testing.T) {
	l := New(t)
	h := l.AddHost("ex")
	out, err := h.Exec(context.Background(), "ip", "-br", "addr", "show", "dev", "eth0")
	require.NoError(t, err)
	require.Contains(t, string(out), h.Addr().String()+"/23")
	require.Contains(t, string(out), h.Addr6().String()+"/64")
	out, err = h.Exec(context.Background(), "ip", "route", "show", "default")
	require.NoError(t, err)
	require.Contains(t, string(out), "default via "+l.Gateway().String())
	out, err = h.Exec(context.Background(), "ip", "-6", "route", "show", "default")
	require.NoError(t, err)
	require.Contains(t, string(out), "default via "+l.hostAddr6(1).String())
	out, err = h.Exec(context.Background(), "ip", "-6", "addr", "show", "dev", "eth0")
	require.NoError(t, err)
	require.Contains(t, string(out), "nodad")
	require.NotContains(t, string(out), "tentative", "IPv6 addresses usable at once")
	out, err = h.Exec(context.Background(), "ip", "-br", "link", "show", "dev", "lo")
	require.NoError(t, err)
	require.Contains(t, string(out), "UP")
	_, err = h.Exec(context.Background(), "false")
	require.Error(t, err)
}

func TestLabDaemons(t *testing.T) {
	ds := Daemons()
	for _, d := range ds {
		RequireDaemon(t, d)
	}
	l := New(t)
	h := l.AddHost("svc")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	start := time.Now()
	errs := make([]error, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.Start(ctx, d)
		}()
	}
	wg.Wait()
	t.Logf("%d daemons, %d ports: %v", len(ds), len(DaemonPorts(ds)), time.Since(start))

	listening, err := h.ListeningPorts(ctx)
	require.NoError(t, err)
	want := DaemonPorts(ds)
	slices.Sort(want)
	require.Equal(t, want, listening, "ss -tln shows exactly the daemons' ports")
	for i, d := range ds {
		t.Run(d.Name, func(t *testing.T) {
			require.NoError(t, errs[i])
			require.Len(t, d.Services, len(d.Ports))
			for _, p := range d.Ports {
				require.NotEmpty(t, d.Services[p], "service name of port %d", p)
				require.Contains(t, listening, p, "ss -tln in the namespace shows port %d", p)
				require.NoError(t, dial(netip.AddrPortFrom(h.Addr(), p), 2*time.Second))
				require.NoError(t, dial(netip.AddrPortFrom(h.Addr6(), p), 2*time.Second))
			}
			if d.Banner == "" {
				return
			}
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(h.Addr(), d.Ports[0]).String(), 2*time.Second)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
			line, err := bufio.NewReader(c).ReadString('\n')
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(line, d.Banner), "banner %q, want prefix %q", line, d.Banner)
		})
	}
}

// linkIndexes maps interface index to name in the root namespace. Tests
// compare indexes, not names: another test process may reuse a freed block,
// and its names, at once.
func linkIndexes(t *testing.T) map[int]string {
	t.Helper()
	out, err := runIP(context.Background(), nil, "-j", "link", "show")
	require.NoError(t, err)
	var links []struct {
		Index int    `json:"ifindex"`
		Name  string `json:"ifname"`
	}
	require.NoError(t, json.Unmarshal(out, &links))
	m := map[int]string{}
	for _, l := range links {
		m[l.Index] = l.Name
	}
	return m
}

func namespaces(t *testing.T) []string {
	t.Helper()
	out, err := runIP(context.Background(), nil, "netns", "list")
	require.NoError(t, err)
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func TestLabCleanup(t *testing.T) {
	Require(t)
	RequireBinary(t, "memcached")
	ctx := context.Background()
	l, err := Open(ctx, Options{})
	require.NoError(t, err)
	var hs []*Host
	for _, name := range []string{"cleanupa", "cleanupb", "cleanupc"} {
		h, err := l.NewHost(ctx, name)
		require.NoError(t, err)
		hs = append(hs, h)
	}
	_, err = hs[0].ListenAddr(netip.AddrPortFrom(hs[0].Addr(), 80), "")
	require.NoError(t, err)
	d, _ := DaemonByName("memcached")
	require.NoError(t, hs[1].Start(ctx, d))
	l.mu.Lock()
	pid := l.procs[0].cmd.Process.Pid
	l.mu.Unlock()
	dir := l.Dir()
	ours := map[int]string{}
	for idx, name := range linkIndexes(t) {
		if name == l.Bridge() || strings.HasPrefix(name, "el"+strconv.Itoa(l.Index())+"h") {
			ours[idx] = name
		}
	}
	require.Len(t, ours, 4, "bridge and three veths")

	require.NoError(t, l.Close())
	require.NoError(t, l.Close(), "second Close is a no-op")

	ns := namespaces(t)
	for _, h := range hs {
		require.NotContains(t, ns, h.Namespace())
	}
	after := linkIndexes(t)
	for idx, name := range ours {
		_, left := after[idx]
		require.False(t, left, "link %s (index %d) removed", name, idx)
	}
	require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "daemon killed")
	_, err = os.Stat(dir)
	require.ErrorIs(t, err, os.ErrNotExist)
	lock, ok, err := tryLock(l.Index())
	require.NoError(t, err)
	if ok {
		lock.Close()
	} else {
		// Another lab took the block at once: then it has built its own bridge.
		require.Contains(t, after, l.Bridge(), "block released or reused")
	}

	_, err = l.NewHost(ctx, "late")
	require.Error(t, err)
}

func TestLabReapsStale(t *testing.T) {
	Require(t)
	ctx := context.Background()
	old, err := Open(ctx, Options{})
	require.NoError(t, err)
	h, err := old.NewHost(ctx, "stale")
	require.NoError(t, err)
	var bridgeIdx int
	for idx, name := range linkIndexes(t) {
		if name == old.Bridge() {
			bridgeIdx = idx
		}
	}
	require.NotZero(t, bridgeIdx)
	// Simulate a crash: the lock goes (as when the process dies), the
	// namespaces and the bridge stay.
	require.NoError(t, old.lock.Close())

	l, err := Open(ctx, Options{})
	require.NoError(t, err)
	defer l.Close()
	// Open reaped it, or another test process's Open is reaping it now.
	require.Eventually(t, func() bool {
		_, left := linkIndexes(t)[bridgeIdx]
		return !left && !slices.Contains(namespaces(t), h.Namespace())
	}, 20*time.Second, 100*time.Millisecond, "stale namespace and bridge removed")
	_ = os.RemoveAll(old.Dir())
}

func TestLabManyHosts(t *testing.T) {
	l := New(t)
	start := time.Now()
	hs := l.AddHosts(254)
	t.Logf("254 hosts: %v", time.Since(start))
	require.Len(t, hs, 254)
	plan, err := ParsePortPlan("rand:2")
	require.NoError(t, err)
	type want struct {
		ap   netip.AddrPort
		open bool
	}
	var wants []want
	for i, h := range hs {
		ports := plan.Ports(1, i)
		for _, p := range ports {
			_, err := h.ListenAddr(netip.AddrPortFrom(h.Addr(), p), "")
			require.NoError(t, err)
		}
		// Each host's ports are its own: the next host's first port is
		// closed here unless the plan opened it on both.
		other := plan.Ports(1, (i+1)%len(hs))[0]
		wants = append(wants, want{netip.AddrPortFrom(h.Addr(), ports[0]), true},
			want{netip.AddrPortFrom(h.Addr(), other), contains(ports, other)})
	}
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for _, w := range wants {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := dial(w.ap, 3*time.Second)
			if (err == nil) != w.open || (err != nil && !errors.Is(err, syscall.ECONNREFUSED)) {
				mu.Lock()
				bad = append(bad, w.ap.String()+": "+errString(err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Empty(t, bad)
	targets, err := l.Targets(context.Background())
	require.NoError(t, err)
	require.Len(t, targets, 2*254)
}

func contains(ports []uint16, p uint16) bool {
	for _, q := range ports {
		if q == p {
			return true
		}
	}
	return false
}

func errString(err error) string {
	if err == nil {
		return "open"
	}
	return err.Error()
}

// fakeTB records what Require does instead of stopping the goroutine.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(args ...any) {
	f.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestRequireMissingBinary(t *testing.T) {
	tests := []struct {
		env      string
		wantFail bool
	}{
		{"", false},
		{"required", true},
	}
	for _, tt := range tests {
		t.Run("env="+tt.env, func(t *testing.T) {
			t.Setenv(RequiredEnv, tt.env)
			f := &fakeTB{}
			done := make(chan struct{})
			go func() {
				defer close(done)
				requireBinaries(f, []string{"ip", "exposure-no-such-daemon"})
			}()
			<-done
			if tt.wantFail {
				require.Contains(t, f.failed, "exposure-no-such-daemon")
				require.Empty(t, f.skipped)
			} else {
				require.Contains(t, f.skipped, "exposure-no-such-daemon")
				require.Empty(t, f.failed)
			}
		})
	}
}

func TestLookPathSbin(t *testing.T) {
	if _, err := os.Stat("/usr/sbin/ip"); err != nil {
		t.Skip("no /usr/sbin/ip on this machine")
	}
	t.Setenv("PATH", "/nonexistent")
	p, err := lookPath("ip")
	require.NoError(t, err)
	require.Equal(t, "/usr/sbin/ip", p)
	_, err = lookPath("exposure-no-such-program")
	require.ErrorIs(t, err, exec.ErrNotFound)
}

func TestLabStartNamed(t *testing.T) {
	l := New(t)
	h := l.AddHost("one")
	ds := Start(t, h, "sshd")
	require.Equal(t, []uint16{22}, DaemonPorts(ds))
	c, err := net.DialTimeout("tcp", netip.AddrPortFrom(h.Addr6(), 22).String(), 2*time.Second)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "SSH-2.0-OpenSSH"), "banner %q", line)
}

func BenchmarkLabOneHost(b *testing.B) {
	l := New(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.AddHost("b" + strconv.Itoa(i))
	}
}

func BenchmarkLabHosts254(b *testing.B) {
	Require(b)
	for i := 0; i < b.N; i++ {
		l, err := Open(context.Background(), Options{})
		require.NoError(b, err)
		_, err = l.NewHosts(context.Background(), 254)
		require.NoError(b, err)
		b.StopTimer()
		require.NoError(b, l.Close())
		b.StartTimer()
	}
}

func BenchmarkLabAllDaemons(b *testing.B) {
	for _, d := range Daemons() {
		RequireDaemon(b, d)
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		l, err := Open(context.Background(), Options{})
		require.NoError(b, err)
		h, err := l.NewHost(context.Background(), "svc")
		require.NoError(b, err)
		b.StartTimer()
		require.NoError(b, h.StartDaemons(context.Background(), Daemons()))
		b.StopTimer()
		require.NoError(b, l.Close())
		b.StartTimer()
	}
}

func TestLabHostNames(t *testing.T) {
	l := New(t)
	ctx := context.Background()
	first, err := l.NewHost(ctx, "dup")
	require.NoError(t, err)
	tests := []struct {
		name    string
		wantErr string
	}{
		{"dup", "name already used"},
		{"Upper", "name must match"},
		{"with-dash", "name must match"},
		{"", "name must match"},
		{"9lives", "name must match"},
		{strings.Repeat("a", 33), "name must match"},
	}
	for _, tt := range tests {
		_, err := l.NewHost(ctx, tt.name)
		require.ErrorContains(t, err, tt.wantErr, "name %q", tt.name)
	}
	_, err = l.NewHosts(ctx, maxHosts)
	require.ErrorContains(t, err, "at most 509 hosts")
	second, err := l.NewHost(ctx, "next")
	require.NoError(t, err)
	require.Equal(t, first.Addr().Next(), second.Addr(), "failed requests use up no addresses")
	require.Equal(t, []*Host{first, second}, l.Hosts())
}

// TestLabNeighboursArePermanent: the bridge knows every host's addresses,
// and every host the bridge's, by permanent neighbour entries, and talking
// over IPv4 and IPv6 learns no others: a lab adds nothing to the kernel's
// neighbour table limits, shared by all namespaces (see addNeighbours).
func TestLabNeighboursArePermanent(t *testing.T) {
	l := New(t)
	hs := l.AddHosts(3)
	ctx := context.Background()
	for _, h := range hs {
		for _, a := range []netip.Addr{h.Addr(), h.Addr6()} {
			// Closed ports: the RST comes back over the neighbour entries.
			require.ErrorIs(t, dial(netip.AddrPortFrom(a, 9), 3*time.Second), syscall.ECONNREFUSED, "%v", a)
		}
	}
	type neigh struct {
		Dst   string   `json:"dst"`
		State []string `json:"state"`
	}
	states := func(out []byte) map[string][]string {
		var ns []neigh
		require.NoError(t, json.Unmarshal(out, &ns), "%s", out)
		m := map[string][]string{}
		for _, n := range ns {
			if !strings.HasPrefix(n.Dst, "fe80:") {
				m[n.Dst] = n.State
			}
		}
		return m
	}
	for _, v := range []string{"-4", "-6"} {
		out, err := runIP(ctx, nil, "-j", v, "neigh", "show", "dev", l.Bridge())
		require.NoError(t, err)
		want := map[string][]string{}
		for _, h := range hs {
			a := h.Addr()
			if v == "-6" {
				a = h.Addr6()
			}
			want[a.String()] = []string{"PERMANENT"}
		}
		require.Equal(t, want, states(out), "bridge %s", v)
		for _, h := range hs {
			out, err := h.Exec(ctx, "ip", "-j", v, "neigh", "show", "dev", "eth0")
			require.NoError(t, err)
			gw := l.Gateway().String()
			if v == "-6" {
				gw = l.Prefix6().Addr().Next().String()
			}
			require.Equal(t, map[string][]string{gw: {"PERMANENT"}}, states(out), "%s %s", h.Name(), v)
		}
	}
}
