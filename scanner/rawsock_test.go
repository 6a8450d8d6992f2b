package scanner

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestReceiverBatches queues forged replies on a loopback raw socket and
// reads them back through recvmmsg: batch boundaries, the read limit, the
// drained report, IPv6 addresses from recvmsg's name and IPV6_PKTINFO,
// and replies with a wrong cookie counted as read but not handed on. The
// packets go to 127.0.0.1 or ::1 only.
func TestReceiverBatches(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("raw sockets need CAP_NET_RAW (run as root)")
	}
	tests := []struct {
		name    string
		addr    string
		valid   int
		forged  int
		limit   int
		reads   []int // packets each readAvailable call returns
		drained []bool
	}{
		{"one", "127.0.0.1", 1, 0, 1024, []int{1, 0}, []bool{true, true}},
		{"one short of a batch", "127.0.0.1", 63, 0, 1024, []int{63}, []bool{true}},
		{"exactly a batch", "127.0.0.1", 64, 0, 1024, []int{64, 0}, []bool{true, true}},
		{"batch and one", "127.0.0.1", 60, 5, 1024, []int{65, 0}, []bool{true, true}},
		{"limit below the queue", "127.0.0.1", 100, 0, 70, []int{70, 30}, []bool{false, true}},
		{"limit a batch", "127.0.0.1", 130, 0, 64, []int{64, 64, 2}, []bool{false, false, true}},
		{"v6", "::1", 90, 10, 1024, []int{100, 0}, []bool{true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := netip.MustParseAddr(tt.addr)
			key, err := newCookieKey()
			require.NoError(t, err)
			// Below the ephemeral range (32768-60999 by default), so no
			// loopback connection can use it, and random, so another run
			// of this test at the same time (its packets loop back too)
			// does not leak into the count.
			sport := uint16(20000 + rand.IntN(12000))
			f, err := openRaw(addr.Is6(), sport, 1, nil)
			if err != nil && addr.Is6() {
				t.Skipf("no IPv6 raw sockets: %v", err)
			}
			require.NoError(t, err)
			t.Cleanup(f.close)
			r, err := newReceiver(f.tcp, addr.Is6(), false, key, sport)
			require.NoError(t, err)

			var pkts [][]byte
			var dsts []netip.Addr
			for i := range tt.valid + tt.forged {
				rport := uint16(1000 + i)
				ack := key.cookie(addr, addr, sport, rport) + 1
				if i >= tt.valid {
					ack++ // not our cookie
				}
				pkt := serializeReply(t, addr, addr, rport, sport, ack, i%2 == 0)
				pkts = append(pkts, pkt)
				dsts = append(dsts, addr)
			}
			// The forged replies leave through the send socket (with
			// their IPv4 header on IPPROTO_RAW) and loop back.
			n, err := sendTo(f.sendFDs[0], addr.Is6(), pkts, dsts)
			require.NoError(t, err)
			require.Equal(t, len(pkts), n)
			waitQueued(t, r.fd)

			var got []reply
			for i, want := range tt.reads {
				n, drained, err := r.readAvailable(tt.limit, func(rp reply) { got = append(got, rp) })
				require.NoError(t, err)
				require.Equal(t, want, n, "call %d", i)
				require.Equal(t, tt.drained[i], drained, "call %d", i)
			}
			require.Len(t, got, tt.valid)
			for i, rp := range got {
				require.Equal(t, addr, rp.remote)
				require.Equal(t, addr, rp.local)
				require.Equal(t, uint16(1000+i), rp.remotePort)
				if i%2 == 0 {
					require.Equal(t, replySynAck, rp.kind)
				} else {
					require.Equal(t, replyRST, rp.kind)
				}
			}
		})
	}
}

// waitQueued waits (boundedly) until the replies sent to fd are queued.
// Loopback delivery is normally done when send returns, but a busy machine
// may leave it to ksoftirqd: wait until the queue's memory stops growing.
func waitQueued(t *testing.T, fd int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var last uint32
	stable := 0
	for stable < 20 && time.Now().Before(deadline) {
		var mi [unix.SK_MEMINFO_VARS]uint32
		l := uint32(len(mi) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mi[0])), uintptr(unsafe.Pointer(&l)), 0)
		require.Zero(t, errno, "SO_MEMINFO")
		rmem := mi[unix.SK_MEMINFO_RMEM_ALLOC]
		if rmem > 0 && rmem == last {
			stable++
		} else {
			stable = 0
		}
		last = rmem
		time.Sleep(time.Millisecond)
	}
	require.Equal(t, 20, stable, "replies queued on the loopback socket")
}
