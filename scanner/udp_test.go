package scanner

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// TestUDPLoopbackStates scans real sockets on loopback: a service that
// answers is open, a port without a socket closed (port unreachable), a
// socket that never answers open|filtered, and one whose answer comes from
// another port (a spoofed reply, shaped as a TFTP error, which counts from
// another port only for port 69) or from another address (127.0.0.2, the
// same port) is not counted as open.
func TestUDPLoopbackStates(t *testing.T) {
	u, err := NewUDP(UDPOptions{Limiter: rate.NewLimiter(rate.Inf, 0), InitialRTO: 50 * time.Millisecond, MinRTO: 10 * time.Millisecond, MaxRTO: 100 * time.Millisecond})
	if err != nil {
		t.Skipf("no raw sockets: %v", err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	port := func(c *net.UDPConn) uint16 { return uint16(c.LocalAddr().(*net.UDPAddr).Port) }
	echo, silent, spoofed, other := listen(), listen(), listen(), listen()
	elsewhere := listen()
	// The same port on another loopback address answers for elsewhere.
	otherAddr, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: int(port(elsewhere))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { otherAddr.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := elsewhere.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = otherAddr.WriteToUDPAddrPort([]byte("not from the probed address"), from)
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = echo.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := spoofed.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = other.WriteToUDPAddrPort([]byte("\x00\x05\x00\x01not from the probed port\x00"), from)
		}
	}()
	closedConn := listen()
	closed := port(closedConn)
	closedConn.Close()
	want := map[uint16]string{
		port(echo):      snapshot.StateOpen,
		port(silent):    snapshot.StateOpenFiltered,
		port(spoofed):   snapshot.StateOpenFiltered,
		port(elsewhere): snapshot.StateOpenFiltered,
		closed:          snapshot.StateClosed,
	}
	var pairs []spec.Pair
	for p := range want {
		pairs = append(pairs, spec.Pair{Addr: lo, Port: p})
	}
	got := map[uint16]string{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := u.Scan(ctx, Job{Pairs: spec.NewPairList(pairs), Retries: 1}, func(r Result) { got[r.Port] = r.State })
	if err != nil {
		t.Fatal(err)
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("port %d: state %q, want %q", p, got[p], w)
		}
	}
	if st.Retransmits != 3 {
		t.Errorf("retransmits %d, want 3 (one for each silent port)", st.Retransmits)
	}
}

// TestDecodeUDPUnreach checks that an ICMP error counts only when it
// quotes a datagram from our source port, and reads the quoted probe.
func TestDecodeUDPUnreach(t *testing.T) {
	msg := func(sport, dport uint16, payload []byte) []byte {
		m := []byte{3, 3, 0, 0, 0, 0, 0, 0}
		ip := make([]byte, 20)
		ip[0], ip[9] = 0x45, 17
		copy(ip[16:20], []byte{198, 18, 0, 2})
		udp := make([]byte, 8)
		binary.BigEndian.PutUint16(udp[0:], sport)
		binary.BigEndian.PutUint16(udp[2:], dport)
		binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
		return append(append(append(m, ip...), udp...), payload...)
	}
	ev, ok := decodeUDPUnreach(msg(40000, 53, udpPayload(53)), false, 40000)
	if !ok || ev.key != (pairKey{netip.MustParseAddr("198.18.0.2"), 53}) || ev.code != 3 || !ours(ev, udpPayload(53)) {
		t.Fatalf("decode = %+v, %v; want port 53 of 198.18.0.2, code 3, our probe", ev, ok)
	}
	if _, ok := decodeUDPUnreach(msg(40001, 53, udpPayload(53)), false, 40000); ok {
		t.Error("an error quoting another source port was accepted")
	}
	ev, _ = decodeUDPUnreach(msg(40000, 53, []byte("other payload")), false, 40000)
	if ours(ev, udpPayload(53)) {
		t.Error("an error quoting another payload counted as ours")
	}
	for n := range len(msg(40000, 53, nil)) {
		decodeUDPUnreach(msg(40000, 53, nil)[:n], false, 40000) // must not panic
		decodeUDPUnreach(msg(40000, 53, nil)[:n], true, 40000)
	}
}

func FuzzDecodeUDPUnreach(f *testing.F) {
	f.Add([]byte{3, 3, 0, 0, 0, 0, 0, 0, 0x45}, false)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		if ev, ok := decodeUDPUnreach(b, v6, 40000); ok {
			ours(ev, udpPayload(53))
		}
	})
}

// FuzzUDPReplyAuth feeds the engine's reply handling datagrams and ICMP
// errors from fuzzed sources while ports 53 and 69 of one address await an
// answer: a port may end open only from a datagram of the probed address
// and port (or, for TFTP's port 69, a TFTP packet from another port of
// that address), and closed or filtered only from an ICMP error quoting
// our probe of it.
func FuzzUDPReplyAuth(f *testing.F) {
	f.Add([]byte("Ex\x84\x00"), byte(2), uint16(53), false, false)
	f.Add([]byte("\x00\x05\x00\x01no\x00"), byte(2), uint16(40123), false, false)
	f.Add([]byte("\x00\x05\x00\x01no\x00"), byte(3), uint16(69), false, false)
	f.Add([]byte{3, 3, 0, 0, 0, 0, 0, 0, 0x45, 0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2, 0x9c, 0x40, 0, 53, 0, 8, 0, 0}, byte(2), uint16(0), true, false)
	target := netip.MustParseAddr("198.18.0.2")
	const sport = 40000
	f.Fuzz(func(t *testing.T, b []byte, host byte, from uint16, isICMP, v6 bool) {
		sc := &udpScan{UDP: &UDP{sport: sport}, win: map[pairKey]*probe{}, est: newRTTEstimator(time.Second, time.Millisecond, time.Second)}
		for _, port := range []uint16{53, 69} {
			k := pairKey{target, port}
			sc.win[k] = &probe{key: k, tries: 1, idx: -1}
		}
		var got []Result
		sc.emit = func(r Result) { got = append(got, r) }
		src := netip.AddrFrom4([4]byte{198, 18, 0, host})
		var ev udpEvent
		if isICMP {
			var ok bool
			if ev, ok = decodeUDPUnreach(b, v6, sport); !ok {
				return
			}
		} else {
			ev = udpReply(netip.AddrPortFrom(src, from), b)
		}
		sc.handle(ev)
		for _, r := range got {
			if r.Addr != target {
				t.Fatalf("a result for %v, never probed", r.Addr)
			}
			if r.State == snapshot.StateOpen {
				if isICMP || src != target {
					t.Fatalf("port %d open from %v (icmp %v)", r.Port, src, isICMP)
				}
				if from != r.Port && !(r.Port == 69 && len(b) >= 4 && b[0] == 0 && (b[1] == 3 || b[1] == 5)) {
					t.Fatalf("port %d open from port %d: %q", r.Port, from, b)
				}
				continue
			}
			if !isICMP || !ours(ev, udpPayload(r.Port)) {
				t.Fatalf("port %d %s without an ICMP error quoting our probe", r.Port, r.State)
			}
		}
	})
}
