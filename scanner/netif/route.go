package netif

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netlinkTimeout bounds the wait for the kernel's answer to a route query.
const netlinkTimeout = 2 * time.Second

// querySeq is the sequence number of the one query on each socket.
const querySeq = 1

// recvBufs are routeVia's receive buffers: a bound -sV checks the route of
// every connection it dials.
var recvBufs = sync.Pool{New: func() any { b := make([]byte, 8192); return &b }}

// routeVia asks the kernel whether a route through interface idx covers dst:
// RTM_GETROUTE with RTM_F_FIB_MATCH returns the routing table entry a packet
// to dst leaving through idx would use, and fails (EHOSTUNREACH,
// ENETUNREACH) when there is none, instead of the on-link guess a plain
// lookup with an output interface makes. Nothing is sent on the network.
func routeVia(dst netip.Addr, idx int) (bool, error) {
	if !dst.IsValid() {
		return false, errors.New("invalid address")
	}
	fam, bits := uint8(unix.AF_INET), uint8(32)
	if dst.Is6() {
		fam, bits = unix.AF_INET6, 128
	}
	fd, err := dialNetlink()
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	ne := binary.NativeEndian
	rtm := make([]byte, unix.SizeofRtMsg)
	rtm[0] = fam  // rtm_family
	rtm[1] = bits // rtm_dst_len
	ne.PutUint32(rtm[8:], unix.RTM_F_FIB_MATCH)
	body := append(rtm, attr(unix.RTA_DST, dst.AsSlice())...)
	oif := make([]byte, 4)
	ne.PutUint32(oif, uint32(idx))
	body = append(body, attr(unix.RTA_OIF, oif)...)

	s := uint32(querySeq)
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	msg = append(msg, body...)
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.RTM_GETROUTE)
	ne.PutUint16(msg[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(msg[8:], s)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return false, fmt.Errorf("rtnetlink send: %w", err)
	}
	bp := recvBufs.Get().(*[]byte)
	defer recvBufs.Put(bp)
	buf := *bp
	for range 16 {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("rtnetlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return false, fmt.Errorf("rtnetlink parse reply: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != s {
				continue
			}
			switch m.Header.Type {
			case unix.RTM_NEWROUTE:
				return true, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return false, errors.New("rtnetlink: short error message")
				}
				switch errno := unix.Errno(-int32(ne.Uint32(m.Data[:4]))); errno {
				case 0:
					return true, nil
				case unix.EHOSTUNREACH, unix.ENETUNREACH, unix.ESRCH, unix.ENODEV:
					// No usable route through the interface.
					return false, nil
				default:
					return false, fmt.Errorf("rtnetlink: %w", errno)
				}
			}
		}
	}
	return false, errors.New("rtnetlink: no answer to the route query")
}

// dialNetlink opens a route netlink socket whose reads time out after
// netlinkTimeout.
func dialNetlink() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, fmt.Errorf("open rtnetlink: %w", err)
	}
	tv := unix.NsecToTimeval(netlinkTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("rtnetlink timeout: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind rtnetlink: %w", err)
	}
	return fd, nil
}

func attr(typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	b := make([]byte, (l+unix.RTA_ALIGNTO-1) & ^(unix.RTA_ALIGNTO-1))
	binary.NativeEndian.PutUint16(b[0:], uint16(l))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[unix.SizeofRtAttr:], data)
	return b
}
