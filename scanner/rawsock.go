package scanner

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
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
	tcpR syscall.RawConn
}

// openRaw opens the raw sockets of one family with BPF filters for source
// port sport attached.
func openRaw(v6 bool, sport uint16) (*rawFamily, error) {
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
	if err := f.setup(sport); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
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
	if f.tcpR, err = f.tcp.SyscallConn(); err != nil {
		return fmt.Errorf("raw socket: %w", err)
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
}

// send writes the segments in pkts (dsts[i] is the destination of
// pkts[i]) and returns how many were sent. It stops at the first error.
func (f *rawFamily) send(pkts [][]byte, dsts []netip.Addr) (int, error) {
	n := 0
	var serr error
	err := f.tcpR.Write(func(fd uintptr) bool {
		for n < len(pkts) {
			var sa unix.Sockaddr
			if f.v6 {
				sa = &unix.SockaddrInet6{Addr: dsts[n].As16()}
			} else {
				sa = &unix.SockaddrInet4{Addr: dsts[n].As4()}
			}
			err := unix.Sendto(int(fd), pkts[n], 0, sa)
			if err == unix.EAGAIN {
				return false // wait until writable
			}
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				serr = err
				return true
			}
			n++
		}
		return true
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return n, fmt.Errorf("send probe to %v: %w", dsts[n], err)
	}
	return n, nil
}

// receiver reads one raw socket until it is closed, delivering batches of
// authenticated replies.
type receiver struct {
	conn    *net.IPConn
	v6      bool
	icmp    bool
	key     cookieKey
	sport   uint16
	deliver func([]reply, time.Time) bool
}

// run reads until the socket is closed or deliver returns false.
func (r *receiver) run() {
	rc, err := r.conn.SyscallConn()
	if err != nil {
		return
	}
	var (
		buf = make([]byte, 65536)
		oob = make([]byte, 128)
		dec decoder
	)
	for {
		var batch []reply
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			for len(batch) < 256 {
				var (
					n, oobn int
					from    unix.Sockaddr
					err     error
				)
				if r.v6 {
					n, oobn, _, from, err = unix.Recvmsg(int(fd), buf, oob, unix.MSG_DONTWAIT)
				} else {
					n, err = unix.Read(int(fd), buf)
				}
				if err == unix.EAGAIN {
					return len(batch) > 0
				}
				if err == unix.EINTR {
					continue
				}
				if err != nil {
					rerr = err
					return true
				}
				if rp, ok := r.decode(&dec, buf[:n], oob[:oobn], from); ok {
					batch = append(batch, rp)
				}
			}
			return true
		})
		if err != nil || rerr != nil {
			return // closed
		}
		if len(batch) > 0 && !r.deliver(batch, time.Now()) {
			return
		}
	}
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
