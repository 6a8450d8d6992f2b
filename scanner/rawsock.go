package scanner

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/exposure-monitor/exposure/scanner/netif"
)

// Socket buffer sizes: a fast sweep produces replies in bursts far above the
// kernel default of ~200 KB; the *FORCE options need CAP_NET_ADMIN and fall
// back to the plain ones.
const (
	rawRecvBuffer = 16 << 20
	rawSendBuffer = 4 << 20
)

// ErrRawPermission is the cause of a raw socket the process may not open:
// the SYN engine needs root or CAP_NET_RAW (the connect engine does not).
var ErrRawPermission = errors.New("raw sockets need root or CAP_NET_RAW")

// listenRaw opens one raw socket, naming the missing privilege when the
// kernel refuses it (EPERM, or EACCES on some kernels).
func listenRaw(network, laddr string) (*net.IPConn, error) {
	c, err := net.ListenPacket(network, laddr)
	if errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("open raw socket %s: %w: %w", network, ErrRawPermission, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open raw socket %s: %w", network, err)
	}
	return c.(*net.IPConn), nil
}

// rawFamily holds the raw sockets of one address family: TCP for
// receiving SYN-ACKs and RSTs, ICMP for unreachables, and one socket per
// sender for sending probes.
type rawFamily struct {
	v6   bool
	tcp  *net.IPConn
	icmp *net.IPConn
	// send are the send sockets; sendFDs[i] is the descriptor sender i
	// writes to. IPv4 sends on IPPROTO_RAW sockets: the probes carry
	// their own IPv4 header (hdrincl), and such a socket never receives,
	// so incoming segments are not cloned for it. IPv6 has no header
	// inclusion for TCP: sender 0 uses the TCP socket, the others extra
	// ip6:tcp sockets with a filter that drops everything.
	send    []*net.IPConn
	sendFDs []int
	// hdrincl says the probes of this family start with the IP header.
	hdrincl bool
	// recvBuf is the TCP socket's receive buffer as the kernel granted it.
	recvBuf int
}

// openRaw opens the raw sockets of one family with BPF filters for source
// port sport attached, plus the send sockets of senders parallel senders,
// so that they do not contend for one socket. With a binding, every one of
// them is bound to its interface before anything is sent: the kernel then
// routes probes only through it, and replies are read only from it.
func openRaw(v6 bool, sport uint16, senders int, b *netif.Binding) (*rawFamily, error) {
	netTCP, netICMP, laddr := "ip4:tcp", "ip4:icmp", "0.0.0.0"
	if v6 {
		netTCP, netICMP, laddr = "ip6:tcp", "ip6:ipv6-icmp", "::"
	}
	tc, err := listenRaw(netTCP, laddr)
	if err != nil {
		return nil, err
	}
	f := &rawFamily{v6: v6, tcp: tc, hdrincl: !v6}
	if f.icmp, err = listenRaw(netICMP, laddr); err != nil {
		tc.Close()
		return nil, err
	}
	if err := errors.Join(bindConn(f.tcp, b), bindConn(f.icmp, b)); err != nil {
		f.close()
		return nil, err
	}
	if err := f.setup(sport); err != nil {
		f.close()
		return nil, err
	}
	netSend := "ip4:255" // IPPROTO_RAW
	if v6 {
		fd, err := connFD(f.tcp)
		if err != nil {
			f.close()
			return nil, err
		}
		f.sendFDs = append(f.sendFDs, fd)
		netSend = netTCP
	}
	for len(f.sendFDs) < senders {
		sc, err := listenRaw(netSend, laddr)
		if err != nil {
			f.close()
			return nil, err
		}
		f.send = append(f.send, sc)
		if err := bindConn(sc, b); err != nil {
			f.close()
			return nil, err
		}
		if err := sendOnly(sc, v6); err != nil {
			f.close()
			return nil, err
		}
		fd, err := connFD(sc)
		if err != nil {
			f.close()
			return nil, err
		}
		f.sendFDs = append(f.sendFDs, fd)
	}
	return f, nil
}

// bindConn binds c to b's interface; nothing without a binding.
func bindConn(c *net.IPConn, b *netif.Binding) error {
	if b == nil {
		return nil
	}
	fd, err := connFD(c)
	if err != nil {
		return err
	}
	return b.BindFD(fd)
}

// sendOnly configures a send socket: its send buffer, and for ip6:tcp a
// filter that accepts nothing, so that it does not queue a copy of every
// incoming TCP segment (an IPPROTO_RAW socket receives nothing anyway).
func sendOnly(c *net.IPConn, v6 bool) error {
	if v6 {
		prog, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
		if err != nil {
			return fmt.Errorf("assemble drop filter: %w", err)
		}
		if err := ipv6.NewPacketConn(c).SetBPF(prog); err != nil {
			return fmt.Errorf("attach bpf filter: %w", err)
		}
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	err = rc.Control(func(fd uintptr) { setBuffer(int(fd), unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, rawSendBuffer) })
	if err != nil {
		return fmt.Errorf("configure raw socket: %w", err)
	}
	return nil
}

// setBuffer sets a socket buffer size with the *FORCE option, or with the
// plain one, capped by the kernel, without CAP_NET_ADMIN.
func setBuffer(fd, force, plain, size int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size)
	}
}

// connFD is the descriptor of c. It stays valid while c is open; the
// engine uses it only with non-blocking calls, so Go's poller never waits
// on it.
func connFD(c *net.IPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("raw socket: %w", err)
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return 0, fmt.Errorf("raw socket: %w", err)
	}
	return fd, nil
}

// drainQueued discards what a raw socket queued before its filter was
// attached: between socket(2) and SO_ATTACH_FILTER it takes every packet
// of its protocol (the loopback traffic of every process), which would
// otherwise be read as the first replies of the scan.
func drainQueued(fd int) {
	var buf [64]byte
	for range 1 << 16 {
		if _, _, err := unix.Recvfrom(fd, buf[:], unix.MSG_DONTWAIT|unix.MSG_TRUNC); err != nil {
			return
		}
	}
}

func (f *rawFamily) setup(sport uint16) error {
	var tcpProg, icmpProg []bpf.Instruction
	if f.v6 {
		// An ip6 raw socket sees the transport header at offset 0.
		tcpProg = []bpf.Instruction{
			bpf.LoadAbsolute{Off: 2, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(sport), SkipFalse: 1},
			bpf.RetConstant{Val: 0xffff},
			bpf.RetConstant{Val: 0},
		}
		icmpProg = []bpf.Instruction{
			bpf.LoadAbsolute{Off: 0, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1, SkipFalse: 1}, // destination unreachable
			bpf.RetConstant{Val: 0xffff},
			bpf.RetConstant{Val: 0},
		}
	} else {
		// An ip4 raw socket sees the IPv4 header: X = header length.
		tcpProg = []bpf.Instruction{
			bpf.LoadMemShift{Off: 0},
			bpf.LoadIndirect{Off: 2, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(sport), SkipFalse: 1},
			bpf.RetConstant{Val: 0xffff},
			bpf.RetConstant{Val: 0},
		}
		icmpProg = []bpf.Instruction{
			bpf.LoadMemShift{Off: 0},
			bpf.LoadIndirect{Off: 0, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 3, SkipFalse: 1}, // destination unreachable
			bpf.RetConstant{Val: 0xffff},
			bpf.RetConstant{Val: 0},
		}
	}
	tcpRaw, err := bpf.Assemble(tcpProg)
	if err != nil {
		return fmt.Errorf("assemble tcp filter: %w", err)
	}
	icmpRaw, err := bpf.Assemble(icmpProg)
	if err != nil {
		return fmt.Errorf("assemble icmp filter: %w", err)
	}
	if f.v6 {
		err = errors.Join(ipv6.NewPacketConn(f.tcp).SetBPF(tcpRaw), ipv6.NewPacketConn(f.icmp).SetBPF(icmpRaw))
	} else {
		err = errors.Join(ipv4.NewPacketConn(f.tcp).SetBPF(tcpRaw), ipv4.NewPacketConn(f.icmp).SetBPF(icmpRaw))
	}
	if err != nil {
		return fmt.Errorf("attach bpf filter: %w", err)
	}
	for _, c := range []*net.IPConn{f.tcp, f.icmp} {
		rc, err := c.SyscallConn()
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		var serr error
		err = rc.Control(func(fd uintptr) {
			s := int(fd)
			drainQueued(s)
			setBuffer(s, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, rawRecvBuffer)
			if c == f.tcp && f.v6 {
				// Sender 0 of IPv6 sends on this socket; the others
				// here only receive.
				setBuffer(s, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, rawSendBuffer)
			}
			if c == f.tcp {
				f.recvBuf, serr = unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF)
				if serr != nil {
					return
				}
			}
			if f.v6 {
				// recvmsg then tells us the local address a reply went to:
				// part of the 4-tuple the cookie covers.
				serr = unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
			}
		})
		if err = errors.Join(err, serr); err != nil {
			return fmt.Errorf("configure raw socket: %w", err)
		}
	}
	return nil
}

func (f *rawFamily) close() {
	if f.tcp != nil {
		f.tcp.Close()
	}
	if f.icmp != nil {
		f.icmp.Close()
	}
	for _, c := range f.send {
		c.Close()
	}
}

// sendTo writes the packets in pkts (dsts[i] is the destination of
// pkts[i]) on socket fd and returns how many were sent. It stops at the
// first error. The packets are what the socket expects: IPv4 header and
// segment on an IPPROTO_RAW socket, the segment alone on ip6:tcp.
func sendTo(fd int, v6 bool, pkts [][]byte, dsts []netip.Addr) (int, error) {
	var (
		sa4 unix.SockaddrInet4
		sa6 unix.SockaddrInet6
	)
	for n := 0; n < len(pkts); {
		var sa unix.Sockaddr = &sa4
		if v6 {
			sa6.Addr = dsts[n].As16()
			sa = &sa6
		} else {
			sa4.Addr = dsts[n].As4()
		}
		switch err := unix.Sendto(fd, pkts[n], 0, sa); err {
		case nil:
			n++
		case unix.EINTR:
		case unix.EAGAIN:
			// Socket send buffer full: wait until it drains.
			_, _ = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, 10)
		default:
			return n, fmt.Errorf("send probe to %v: %w", dsts[n], err)
		}
	}
	return len(pkts), nil
}

// Receive batching: one recvmmsg(2) call reads up to recvBatch packets into
// slots of recvSlot bytes. Replies to probes are far smaller; a longer
// packet is cut short, which keeps every header the decoder looks at.
const (
	recvBatch = 64
	recvSlot  = 2048
	oobSlot   = 64 // one IPV6_PKTINFO control message (32 bytes), with room
)

// receiver reads one raw socket without blocking. The engine loop calls
// it: replies already in the kernel are always read before any timeout is
// declared, however late the loop got the CPU.
type receiver struct {
	fd    int
	v6    bool
	icmp  bool
	key   cookieKey
	sport uint16
	dec   decoder

	// Buffers of the recvmmsg batch: slot i of bufs, oobs and names
	// belongs to msgs[i]. Only ip6:tcp needs the source address and
	// control data; the others carry the addresses in the packet (IPv4
	// header, or the probe an ICMPv6 error quotes).
	bufs  []byte
	oobs  []byte
	names []unix.RawSockaddrInet6
	iovs  []unix.Iovec
	msgs  []unix.Mmsghdr
}

func newReceiver(c *net.IPConn, v6, icmp bool, key cookieKey, sport uint16) (*receiver, error) {
	fd, err := connFD(c)
	if err != nil {
		return nil, err
	}
	r := &receiver{
		fd: fd, v6: v6, icmp: icmp, key: key, sport: sport,
		bufs: make([]byte, recvBatch*recvSlot),
		iovs: make([]unix.Iovec, recvBatch),
		msgs: make([]unix.Mmsghdr, recvBatch),
	}
	if r.withAddr() {
		r.oobs = make([]byte, recvBatch*oobSlot)
		r.names = make([]unix.RawSockaddrInet6, recvBatch)
	}
	for i := range r.msgs {
		r.iovs[i].Base = &r.bufs[i*recvSlot]
		r.msgs[i].Hdr.Iov = &r.iovs[i]
		r.msgs[i].Hdr.SetIovlen(1)
		if r.withAddr() {
			r.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
			r.msgs[i].Hdr.Control = &r.oobs[i*oobSlot]
		}
	}
	return r, nil
}

// withAddr says whether replies need recvmsg's source address and
// IPV6_PKTINFO: only ip6:tcp delivers the bare segment.
func (r *receiver) withAddr() bool { return r.v6 && !r.icmp }

// readAvailable hands up to limit authenticated replies already queued on
// the socket to fn and reports how many packets it read, and whether it
// found the queue empty (a batch came back short, or none was queued).
func (r *receiver) readAvailable(limit int, fn func(reply)) (int, bool, error) {
	n := 0
	for n < limit {
		want := min(len(r.msgs), limit-n)
		got, err := r.recvmmsg(want)
		switch err {
		case nil:
		case unix.EAGAIN:
			return n, true, nil
		case unix.EINTR:
			continue
		default:
			return n, false, fmt.Errorf("read raw socket: %w", err)
		}
		for i := range got {
			n++
			if rp, ok := r.decodeSlot(i); ok {
				fn(rp)
			}
		}
		if got < want {
			return n, true, nil
		}
	}
	return n, false, nil
}

// recvmmsg reads up to want packets into the first want slots without
// blocking.
func (r *receiver) recvmmsg(want int) (int, error) {
	for i := range want {
		m := &r.msgs[i]
		r.iovs[i].SetLen(recvSlot)
		m.Hdr.Flags = 0
		m.Len = 0
		if r.withAddr() {
			m.Hdr.Namelen = unix.SizeofSockaddrInet6
			m.Hdr.SetControllen(oobSlot)
		}
	}
	got, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&r.msgs[0])),
		uintptr(want), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(got), nil
}

// decodeSlot decodes the packet recvmmsg put into slot i.
func (r *receiver) decodeSlot(i int) (reply, bool) {
	m := &r.msgs[i]
	pkt := r.bufs[i*recvSlot : i*recvSlot+min(int(m.Len), recvSlot)]
	var (
		rp  reply
		err error
	)
	switch {
	case !r.v6 && !r.icmp:
		rp, err = r.dec.tcp4(pkt)
	case !r.v6 && r.icmp:
		rp, err = r.dec.icmp4Unreach(pkt)
	case r.v6 && r.icmp:
		rp, err = r.dec.icmp6Unreach(pkt)
	default:
		name := &r.names[i]
		if m.Hdr.Namelen < unix.SizeofSockaddrInet6 || name.Family != unix.AF_INET6 {
			return reply{}, false
		}
		local, ok := pktinfoDst(r.oobs[i*oobSlot : i*oobSlot+min(int(m.Hdr.Controllen), oobSlot)])
		if !ok {
			return reply{}, false
		}
		rp, err = r.dec.tcp6(pkt, local, netip.AddrFrom16(name.Addr).Unmap())
	}
	if err != nil || !r.key.valid(rp, r.sport) {
		return reply{}, false
	}
	return rp, true
}

// pktinfoDst extracts the destination address from an IPV6_PKTINFO control
// message.
func pktinfoDst(oob []byte) (netip.Addr, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.Addr{}, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= 16 {
			return netip.AddrFrom16([16]byte(m.Data[:16])).Unmap(), true
		}
	}
	return netip.Addr{}, false
}
