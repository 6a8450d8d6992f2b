package lab

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// configureHost brings lo and eth0 up, adds the host's addresses (IPv6
// without duplicate address detection) and the default routes via the
// bridge. It talks rtnetlink from a thread inside the namespace: an ip(8)
// per namespace costs milliseconds each, which adds up to seconds for a few
// hundred hosts.
func configureHost(h *Host, gw4, gw6 netip.Addr, gwMAC net.HardwareAddr) error {
	return h.do(func() error {
		nl, err := dialNetlink()
		if err != nil {
			return err
		}
		defer nl.close()
		eth0, err := net.InterfaceByName("eth0")
		if err != nil {
			return fmt.Errorf("find eth0: %w", err)
		}
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			return fmt.Errorf("find lo: %w", err)
		}
		// No duplicate address detection for the link-local address either
		// (ours get IFA_F_NODAD). /proc/sys/net shows the opening thread's
		// namespace.
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/eth0/accept_dad", []byte("0"), 0); err != nil {
			return fmt.Errorf("disable DAD: %w", err)
		}
		for _, idx := range []int{lo.Index, eth0.Index} {
			if err := nl.linkUp(idx); err != nil {
				return err
			}
		}
		if err := nl.addAddr(eth0.Index, netip.PrefixFrom(h.addr, 23)); err != nil {
			return err
		}
		if err := nl.addAddr(eth0.Index, netip.PrefixFrom(h.addr6, 64)); err != nil {
			return err
		}
		for _, gw := range []netip.Addr{gw4, gw6} {
			if err := nl.addNeighbour(eth0.Index, gw, gwMAC); err != nil {
				return err
			}
			if err := nl.addDefaultRoute(eth0.Index, gw); err != nil {
				return err
			}
		}
		h.mac = eth0.HardwareAddr
		return nil
	})
}

type netlinkConn struct {
	fd  int
	seq uint32
}

func dialNetlink() (*netlinkConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind rtnetlink: %w", err)
	}
	return &netlinkConn{fd: fd}, nil
}

func (c *netlinkConn) close() { unix.Close(c.fd) }

// request sends one message and waits for its acknowledgement.
func (c *netlinkConn) request(typ uint16, flags uint16, body []byte, what string) error {
	c.seq++
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	msg = append(msg, body...)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], typ)
	ne.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	ne.PutUint32(msg[8:], c.seq)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("%s: send: %w", what, err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			return fmt.Errorf("%s: receive: %w", what, err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("%s: parse reply: %w", what, err)
		}
		for _, m := range msgs {
			if m.Header.Seq != c.seq || m.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			if len(m.Data) < 4 {
				return fmt.Errorf("%s: short netlink error message", what)
			}
			if errno := int32(ne.Uint32(m.Data[:4])); errno != 0 {
				return fmt.Errorf("%s: %w", what, unix.Errno(-errno))
			}
			return nil
		}
	}
}

func attr(typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	b := make([]byte, (l+unix.RTA_ALIGNTO-1) & ^(unix.RTA_ALIGNTO-1))
	binary.NativeEndian.PutUint16(b[0:], uint16(l))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[unix.SizeofRtAttr:], data)
	return b
}

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func (c *netlinkConn) linkUp(index int) error {
	b := make([]byte, unix.SizeofIfInfomsg)
	ne := binary.NativeEndian
	b[0] = unix.AF_UNSPEC
	ne.PutUint32(b[4:], uint32(int32(index)))
	ne.PutUint32(b[8:], unix.IFF_UP)  // flags
	ne.PutUint32(b[12:], unix.IFF_UP) // change mask
	return c.request(unix.RTM_NEWLINK, 0, b, fmt.Sprintf("set link %d up", index))
}

func (c *netlinkConn) addAddr(index int, p netip.Prefix) error {
	b := make([]byte, unix.SizeofIfAddrmsg)
	b[0] = family(p.Addr())
	b[1] = uint8(p.Bits())
	if p.Addr().Is6() {
		b[2] = unix.IFA_F_NODAD // usable at once, no duplicate detection
	}
	b[3] = unix.RT_SCOPE_UNIVERSE
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	a := p.Addr().AsSlice()
	b = append(b, attr(unix.IFA_LOCAL, a)...)
	b = append(b, attr(unix.IFA_ADDRESS, a)...)
	return c.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, b, "add address "+p.String())
}

// addNeighbour adds (or replaces) a permanent neighbour entry: addr is at
// mac on link index.
func (c *netlinkConn) addNeighbour(index int, addr netip.Addr, mac net.HardwareAddr) error {
	b := make([]byte, unix.SizeofNdMsg)
	b[0] = family(addr)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	binary.NativeEndian.PutUint16(b[8:], unix.NUD_PERMANENT)
	b = append(b, attr(unix.NDA_DST, addr.AsSlice())...)
	b = append(b, attr(unix.NDA_LLADDR, mac)...)
	return c.request(unix.RTM_NEWNEIGH, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, b,
		fmt.Sprintf("add neighbour %v at %v", addr, mac))
}

func (c *netlinkConn) addDefaultRoute(index int, gw netip.Addr) error {
	b := make([]byte, unix.SizeofRtMsg)
	b[0] = family(gw) // dst_len, src_len, tos stay 0: the default route
	b[4] = unix.RT_TABLE_MAIN
	b[5] = unix.RTPROT_BOOT
	b[6] = unix.RT_SCOPE_UNIVERSE
	b[7] = unix.RTN_UNICAST
	b = append(b, attr(unix.RTA_GATEWAY, gw.AsSlice())...)
	oif := make([]byte, 4)
	binary.NativeEndian.PutUint32(oif, uint32(index))
	b = append(b, attr(unix.RTA_OIF, oif)...)
	return c.request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, b, "add default route via "+gw.String())
}
