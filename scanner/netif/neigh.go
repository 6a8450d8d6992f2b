package netif

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Neighbours returns the IPv4 neighbour table of interface index: the
// link-layer address of every neighbour the kernel holds a valid entry
// for (reachable, stale, delay, probe, permanent). Nothing is sent on the
// network.
func Neighbours(index int) (map[netip.Addr]net.HardwareAddr, error) {
	fd, err := dialNetlink()
	if err != nil {
		return nil, fmt.Errorf("neighbours: %w", err)
	}
	defer unix.Close(fd)
	ne := binary.NativeEndian
	msg := make([]byte, unix.SizeofNlMsghdr+unix.SizeofNdMsg)
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.RTM_GETNEIGH)
	ne.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(msg[8:], 1)
	msg[unix.SizeofNlMsghdr] = unix.AF_INET
	ne.PutUint32(msg[unix.SizeofNlMsghdr+4:], uint32(index))
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("neighbours: %w", err)
	}
	out := map[netip.Addr]net.HardwareAddr{}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("neighbours: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("neighbours: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				return nil, errors.New("neighbours: netlink error")
			case unix.RTM_NEWNEIGH:
				if a, mac, ok := parseNeighbour(m.Data, index); ok {
					out[a] = mac
				}
			}
		}
	}
}

// validNeighbour is the set of states in which the kernel itself would send
// to the entry's address without resolving it first.
const validNeighbour = unix.NUD_REACHABLE | unix.NUD_STALE | unix.NUD_DELAY | unix.NUD_PROBE | unix.NUD_PERMANENT

// parseNeighbour reads one RTM_NEWNEIGH body: the IPv4 address and
// Ethernet address of a valid entry on interface index.
func parseNeighbour(b []byte, index int) (netip.Addr, net.HardwareAddr, bool) {
	if len(b) < unix.SizeofNdMsg {
		return netip.Addr{}, nil, false
	}
	ne := binary.NativeEndian
	if b[0] != unix.AF_INET || int(int32(ne.Uint32(b[4:]))) != index || ne.Uint16(b[8:])&validNeighbour == 0 {
		return netip.Addr{}, nil, false
	}
	var (
		addr netip.Addr
		mac  net.HardwareAddr
	)
	for rest := b[unix.SizeofNdMsg:]; len(rest) >= unix.SizeofRtAttr; {
		l, typ := int(ne.Uint16(rest[0:])), ne.Uint16(rest[2:])
		if l < unix.SizeofRtAttr || l > len(rest) {
			break
		}
		data := rest[unix.SizeofRtAttr:l]
		switch {
		case typ == unix.NDA_DST && len(data) == 4:
			addr = netip.AddrFrom4([4]byte(data))
		case typ == unix.NDA_LLADDR && len(data) == 6:
			mac = net.HardwareAddr(append([]byte(nil), data...))
		}
		rest = rest[min((l+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1), len(rest)):]
	}
	if !addr.IsValid() || mac == nil || mac.String() == "00:00:00:00:00:00" {
		return netip.Addr{}, nil, false
	}
	return addr, mac, true
}
