package scanner

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// egressWatch counts the IP packets leaving this machine through one
// interface towards any of a set of prefixes.
type egressWatch struct {
	dev  string
	fd   int
	n    atomic.Int64
	stop atomic.Bool
	wg   sync.WaitGroup
}

// defaultDev is the interface of the default route, "" without one: where
// packets to a torn-down lab would go.
func defaultDev(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "-j", "route", "show", "default").Output()
	require.NoError(t, err)
	var routes []struct {
		Dev string `json:"dev"`
	}
	require.NoError(t, json.Unmarshal(out, &routes))
	if len(routes) == 0 {
		return ""
	}
	return routes[0].Dev
}

// watchEgress starts counting packets leaving through dev (the default
// route's interface if ""); the count is final after close.
func watchEgress(t *testing.T, dev string, prefixes ...netip.Prefix) *egressWatch {
	t.Helper()
	if dev == "" {
		if dev = defaultDev(t); dev == "" {
			t.Log("no default route: nothing can leave through one; not watching")
			return &egressWatch{fd: -1}
		}
	}
	ifi, err := net.InterfaceByName(dev)
	require.NoError(t, err)
	proto := htons(unix.ETH_P_ALL)
	// Cooked mode: the IP packet without the link-layer header.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto))
	require.NoError(t, err)
	require.NoError(t, unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}))
	tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
	require.NoError(t, unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))
	w := &egressWatch{dev: ifi.Name, fd: fd}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		buf := make([]byte, 2048)
		for !w.stop.Load() {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			ll, ok := from.(*unix.SockaddrLinklayer)
			if !ok || ll.Pkttype != unix.PACKET_OUTGOING {
				continue
			}
			if dst, ok := packetDst(buf[:n]); ok {
				for _, p := range prefixes {
					if p.Contains(dst) {
						w.n.Add(1)
					}
				}
			}
		}
	}()
	t.Cleanup(w.close)
	return w
}

// packetDst is the destination of an IPv4 or IPv6 packet.
func packetDst(p []byte) (netip.Addr, bool) {
	if len(p) >= 20 && p[0]>>4 == 4 {
		return netip.AddrFrom4([4]byte(p[16:20])), true
	}
	if len(p) >= 40 && p[0]>>4 == 6 {
		return netip.AddrFrom16([16]byte(p[24:40])), true
	}
	return netip.Addr{}, false
}

func (w *egressWatch) close() {
	if w.fd < 0 || w.stop.Swap(true) {
		return
	}
	w.wg.Wait()
	unix.Close(w.fd)
}

// count stops the watch and returns how many packets it saw.
func (w *egressWatch) count() int64 {
	w.close()
	return w.n.Load()
}

// TestLabInterfaceBinding: bound to the lab's bridge, both engines find the
// lab host's ports (IPv4 and IPv6) and do not probe a host of another lab,
// which sees no segment; bound to lo, nothing reaches either lab. No probe
// leaves through the default route's interface.
func TestLabInterfaceBinding(t *testing.T) {
	a, b := lab.New(t), lab.New(t)
	ha, hb := a.AddHost("a"), b.AddHost("b")
	ha.Listen(22)
	hb.Listen(22)
	require.NotEqual(t, a.Interface(), b.Interface())
	require.Equal(t, a.Bridge(), a.Interface())
	closedA := uint16(23)
	w := watchEgress(t, "", a.Prefix(), a.Prefix6(), b.Prefix(), b.Prefix6())
	// The same watch on lab a's bridge proves it sees probes.
	wa := watchEgress(t, a.Interface(), a.Prefix(), a.Prefix6())

	engines := map[string]func(iface string) Engine{
		"syn": func(iface string) Engine {
			s, err := NewSYN(SYNOptions{Limiter: rate.NewLimiter(labRate, labRate/100), Bind: bindTo(t, iface)})
			require.NoError(t, err)
			return s
		},
		"connect": func(iface string) Engine {
			return NewConnect(ConnectOptions{Timeout: time.Second, Bind: bindTo(t, iface)})
		},
	}
	for _, name := range []string{"syn", "connect"} {
		t.Run(name+"/bridge", func(t *testing.T) {
			segsB := hb.TCPSegmentsIn()
			e := engines[name](a.Interface())
			var pairs []spec.Pair
			for _, addr := range []netip.Addr{ha.Addr(), ha.Addr6(), hb.Addr(), hb.Addr6()} {
				pairs = append(pairs, spec.Pair{Addr: addr, Port: 22}, spec.Pair{Addr: addr, Port: closedA})
			}
			got, st := scanAll(t, e, pairs, 1)
			require.Len(t, got, len(pairs))
			for _, addr := range []netip.Addr{ha.Addr(), ha.Addr6()} {
				require.Equal(t, snapshot.StateOpen, got[spec.Pair{Addr: addr, Port: 22}].State, "%v", addr)
				require.Equal(t, snapshot.StateClosed, got[spec.Pair{Addr: addr, Port: closedA}].State, "%v", addr)
			}
			for _, addr := range []netip.Addr{hb.Addr(), hb.Addr6()} {
				for _, port := range []uint16{22, closedA} {
					require.Equal(t, Result{Addr: addr, Port: port, State: snapshot.StateFiltered, Reason: "not probed: no route via " + a.Interface()},
						got[spec.Pair{Addr: addr, Port: port}])
				}
			}
			require.Equal(t, uint64(4), st.Replies)
			require.Equal(t, uint64(4), st.ProbesSent, "only lab a's pairs were probed")
			require.Equal(t, segsB, hb.TCPSegmentsIn(), "a host of another lab received segments")
		})
		t.Run(name+"/lo", func(t *testing.T) {
			segsA, segsB := ha.TCPSegmentsIn(), hb.TCPSegmentsIn()
			e := engines[name]("lo")
			pairs := []spec.Pair{{Addr: ha.Addr(), Port: 22}, {Addr: ha.Addr6(), Port: 22}, {Addr: hb.Addr(), Port: 22}}
			got, st := scanAll(t, e, pairs, 1)
			require.Len(t, got, len(pairs))
			for _, p := range pairs {
				require.Equal(t, Result{Addr: p.Addr, Port: p.Port, State: snapshot.StateFiltered, Reason: "not probed: no route via lo"}, got[p])
			}
			require.Equal(t, Stats{}, st, "nothing sent, nothing received")
			require.Equal(t, segsA, ha.TCPSegmentsIn())
			require.Equal(t, segsB, hb.TCPSegmentsIn())
		})
	}
	require.Zero(t, w.count(), "packets to the labs left through %s", w.dev)
	require.GreaterOrEqual(t, wa.count(), int64(8), "the watch saw the probes on %s", wa.dev)
}

// TestLabInterfaceTeardown replays the incident: the lab's bridge goes away
// while a SYN scan bound to it runs. The routes to the lab's addresses then
// lead out of the default route's interface, but the bound sockets cannot
// use it: the remaining probes are not sent, and nothing leaves. A scan
// started after that fails, naming the interface.
func TestLabInterfaceTeardown(t *testing.T) {
	l := lab.New(t)
	h := l.AddHost("doomed")
	for _, p := range []uint16{22, 80} {
		h.Listen(p)
	}
	w := watchEgress(t, "", l.Prefix(), l.Prefix6())
	// Enough probes for the TX rings (ringMinProbes), which must fail as
	// the IP sockets do.
	s, err := NewSYN(SYNOptions{Limiter: rate.NewLimiter(20000, 200), Bind: bindTo(t, l.Interface())})
	require.NoError(t, err)
	ports, err := spec.ParsePorts("1-40000")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var (
		mu       sync.Mutex
		results  int
		notSent  int
		reasons  = map[string]int{}
		teardown = make(chan struct{})
	)
	go func() {
		defer close(teardown)
		time.Sleep(500 * time.Millisecond)
		// The bridge only: the block stays ours, so no other lab can take
		// its name or addresses before the lab's cleanup.
		out, err := exec.Command("ip", "link", "del", l.Interface()).CombinedOutput()
		if err != nil {
			t.Errorf("delete bridge %s: %v: %s", l.Interface(), err, out)
		}
	}()
	order := spec.NewOrder(spec.AddrSetOf(h.Addr()), ports, spec.OrderOptions{Sequential: true})
	st, err := s.Scan(ctx, Job{Pairs: order, Retries: 1}, func(r Result) {
		mu.Lock()
		defer mu.Unlock()
		results++
		if strings.HasPrefix(r.Reason, "not probed: ") {
			notSent++
			reasons[r.Reason]++
		}
	})
	<-teardown
	require.NoError(t, err)
	require.Equal(t, 40000, results, "every pair has a verdict")
	require.NotZero(t, st.RingSent, "the probes went through the TX ring")
	t.Logf("%+v; not sent: %d %v", st, notSent, reasons)
	require.Greater(t, notSent, 5000, "probes after the teardown are not sent")
	for reason := range reasons {
		// While the bridge goes down its routes go first: a few sends
		// fail with ENETUNREACH before the device is gone.
		require.Contains(t, []string{"not probed: interface " + l.Interface() + ": no such device",
			"not probed: interface " + l.Interface() + ": network is down", // the TX ring, as the bridge goes down first
			"not probed: network is unreachable"}, reason)
	}
	require.Equal(t, uint64(40000-notSent), st.ProbesSent-st.Retransmits, "probes the kernel refused are not counted as sent")

	_, err = s.Scan(ctx, Job{Pairs: spec.NewPairList([]spec.Pair{{Addr: h.Addr(), Port: 22}})}, func(Result) {
		t.Error("a result without the interface")
	})
	require.ErrorContains(t, err, fmt.Sprintf("interface %q: no such network interface", l.Interface()))
	require.Zero(t, w.count(), "packets to the lab left through %s", w.dev)
}
