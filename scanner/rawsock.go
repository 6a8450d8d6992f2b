package scanner

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

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

// rawFamily holds the raw sockets of one address family: TCP for sending
// probes and receiving SYN-ACKs and RSTs, ICMP for unreachables.
type rawFamily struct {
	v6   bool
	tcp  *net.IPConn
	icmp *net.IPConn
	// extra are the additional send-only sockets; sendFDs[i] is the
	// descriptor sender i writes to (sendFDs[0] is tcp's).
	extra   []*net.IPConn
	sendFDs []int
	// recvBuf is the TCP socket's receive buffer as the kernel granted it.
	recvBuf int
}

// openRaw opens the raw sockets of one family with BPF filters for source
// port sport attached, plus senders-1 extra send-only TCP sockets, so that
// parallel senders do not contend for one socket. With a binding, every one
// of them is bound to its interface before anything is sent: the kernel
// then routes probes only through it, and replies are read only from it.
func openRaw(v6 bool, sport uint16, senders int, b *netif.Binding) (*rawFamily, error) {
	netTCP, netICMP, laddr := "ip4:tcp", "ip4:icmp", "0.0.0.0"
	if v6 {
		netTCP, netICMP, laddr = "ip6:tcp", "ip6:ipv6-icmp", "::"
	}
	tc, err := net.ListenPacket(netTCP, laddr)
	if err != nil {
		return nil, fmt.Errorf("open raw socket %s: %w", netTCP, err)
	}
	f := &rawFamily{v6: v6, tcp: tc.(*net.IPConn)}
	ic, err := net.ListenPacket(netICMP, laddr)
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("open raw socket %s: %w", netICMP, err)
	}
	f.icmp = ic.(*net.IPConn)
	if err := errors.Join(bindConn(f.tcp, b), bindConn(f.icmp, b)); err != nil {
		f.close()
		return nil, err
	}
	if err := f.setup(sport); err != nil {
		f.close()
		return nil, err
	}
	fd, err := connFD(f.tcp)
	if err != nil {
		f.close()
		return nil, err
	}
	f.sendFDs = append(f.sendFDs, fd)
	for range senders - 1 {
		c, err := net.ListenPacket(netTCP, laddr)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("open raw socket %s: %w", netTCP, err)
		}
		ic := c.(*net.IPConn)
		f.extra = append(f.extra, ic)
		if err := bindConn(ic, b); err != nil {
			f.close()
			return nil, err
		}
		if err := dropAll(ic, v6); err != nil {
			f.close()
			return nil, err
		}
		fd, err := connFD(ic)
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

// dropAll attaches a filter that accepts nothing: a send-only raw socket
// must not queue a copy of every incoming TCP segment.
func dropAll(c *net.IPConn, v6 bool) error {
	prog, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		return fmt.Errorf("assemble drop filter: %w", err)
	}
	if v6 {
		err = ipv6.NewPacketConn(c).SetBPF(prog)
	} else {
		err = ipv4.NewPacketConn(c).SetBPF(prog)
	}
	if err != nil {
		return fmt.Errorf("attach bpf filter: %w", err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	err = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, rawSendBuffer) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, rawSendBuffer)
		}
	})
	if err != nil {
		return fmt.Errorf("configure raw socket: %w", err)
	}
	return nil
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
			if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rawRecvBuffer) != nil {
				_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, rawRecvBuffer)
			}
			if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, rawSendBuffer) != nil {
				_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, rawSendBuffer)
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
	for _, c := range f.extra {
		c.Close()
	}
}

// sendTo writes the segments in pkts (dsts[i] is the destination of
// pkts[i]) on socket fd and returns how many were sent. It stops at the
// first error.
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

// receiver reads one raw socket without blocking. The engine loop calls
// it: replies already in the kernel are always read before any timeout is
// declared, however late the loop got the CPU.
type receiver struct {
	fd    int
	v6    bool
	icmp  bool
	key   cookieKey
	sport uint16
	buf   []byte
	oob   []byte
	dec   decoder
}

func newReceiver(c *net.IPConn, v6, icmp bool, key cookieKey, sport uint16) (*receiver, error) {
	fd, err := connFD(c)
	if err != nil {
		return nil, err
	}
	return &receiver{fd: fd, v6: v6, icmp: icmp, key: key, sport: sport, buf: make([]byte, 65536), oob: make([]byte, 128)}, nil
}

// readAvailable hands up to limit authenticated replies already queued on
// the socket to fn and reports how many packets it read.
func (r *receiver) readAvailable(limit int, fn func(reply)) (int, error) {
	n := 0
	for n < limit {
		var (
			size, oobn int
			from       unix.Sockaddr
			err        error
		)
		if r.v6 && !r.icmp {
			size, oobn, _, from, err = unix.Recvmsg(r.fd, r.buf, r.oob, unix.MSG_DONTWAIT)
		} else {
			// The packet carries the addresses (IPv4 header, or the
			// probe an ICMPv6 error quotes): no sockaddr to allocate.
			size, err = unix.Read(r.fd, r.buf)
		}
		switch err {
		case nil:
		case unix.EAGAIN:
			return n, nil
		case unix.EINTR:
			continue
		default:
			return n, fmt.Errorf("read raw socket: %w", err)
		}
		n++
		if rp, ok := r.decode(&r.dec, r.buf[:size], r.oob[:oobn], from); ok {
			fn(rp)
		}
	}
	return n, nil
}

func (r *receiver) decode(d *decoder, pkt, oob []byte, from unix.Sockaddr) (reply, bool) {
	var (
		rp  reply
		err error
	)
	switch {
	case !r.v6 && !r.icmp:
		rp, err = d.tcp4(pkt)
	case !r.v6 && r.icmp:
		rp, err = d.icmp4Unreach(pkt)
	case r.v6 && r.icmp:
		rp, err = d.icmp6Unreach(pkt)
	default:
		sa, ok := from.(*unix.SockaddrInet6)
		if !ok {
			return reply{}, false
		}
		local, ok := pktinfoDst(oob)
		if !ok {
			return reply{}, false
		}
		rp, err = d.tcp6(pkt, local, netip.AddrFrom16(sa.Addr).Unmap())
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
