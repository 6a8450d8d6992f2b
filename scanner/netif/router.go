package netif

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Route is where the kernel would send a packet to a destination: from
// which local address, and through which gateway (invalid when the
// destination is on the link).
type Route struct {
	Src     netip.Addr
	Gateway netip.Addr
}

// Router answers route queries on one netlink socket it keeps open, so a
// scan of many destinations costs one round trip to the kernel per
// destination rather than a socket, a connect and a netlink socket each.
// It is not safe for concurrent use.
type Router struct {
	fd   int
	seq  uint32
	bind *Binding
	idx  int // the binding's interface index, 0 unbound
	buf  []byte
	req  []byte
}

// NewRouter opens a router; with a binding, routes are those through its
// interface (as looked up now) and a destination without one is a
// *NoRouteError.
func NewRouter(b *Binding) (*Router, error) {
	idx, err := b.Index()
	if err != nil {
		return nil, err
	}
	fd, err := dialNetlink()
	if err != nil {
		return nil, err
	}
	return &Router{fd: fd, bind: b, idx: idx, buf: make([]byte, 8192)}, nil
}

// Close closes the router's socket.
func (r *Router) Close() error { return unix.Close(r.fd) }

// Lookup returns the route the kernel would pick for a packet to dst, as
// a UDP socket (bound to the binding's interface) connected to dst would
// see it. It sends nothing on the network.
func (r *Router) Lookup(dst netip.Addr) (Route, error) {
	dst = dst.Unmap()
	if !dst.IsValid() {
		return Route{}, errors.New("route: invalid address")
	}
	if r.idx != 0 {
		// A plain lookup with an output interface guesses "on link" when
		// no route goes through it; the FIB match says whether one does.
		if _, err := r.query(dst, unix.RTM_F_FIB_MATCH); err != nil {
			if errors.Is(err, errNoRoute) {
				return Route{}, &NoRouteError{Interface: r.bind.Name(), Addr: dst}
			}
			return Route{}, fmt.Errorf("route to %v via %s: %w", dst, r.bind.Name(), err)
		}
	}
	rt, err := r.query(dst, 0)
	if err != nil {
		if errors.Is(err, errNoRoute) && r.idx != 0 {
			return Route{}, &NoRouteError{Interface: r.bind.Name(), Addr: dst}
		}
		return Route{}, fmt.Errorf("route to %v: %w", dst, err)
	}
	if !rt.Src.IsValid() {
		return Route{}, fmt.Errorf("route to %v: no source address", dst)
	}
	return rt, nil
}

var errNoRoute = errors.New("no route")

// query sends one RTM_GETROUTE for dst with rtm flags and parses the
// answer's preferred source and gateway.
func (r *Router) query(dst netip.Addr, flags uint32) (Route, error) {
	fam, bits := uint8(unix.AF_INET), uint8(32)
	if dst.Is6() {
		fam, bits = unix.AF_INET6, 128
	}
	ne := binary.NativeEndian
	r.seq++
	req := r.req[:0]
	req = append(req, make([]byte, unix.SizeofNlMsghdr+unix.SizeofRtMsg)...)
	ne.PutUint16(req[4:], unix.RTM_GETROUTE)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], r.seq)
	rtm := req[unix.SizeofNlMsghdr:]
	rtm[0], rtm[1] = fam, bits
	ne.PutUint32(rtm[8:], flags)
	req = appendAttr(req, unix.RTA_DST, dst.AsSlice())
	if r.idx != 0 {
		var oif [4]byte
		ne.PutUint32(oif[:], uint32(r.idx))
		req = appendAttr(req, unix.RTA_OIF, oif[:])
	}
	ne.PutUint32(req[0:], uint32(len(req)))
	r.req = req
	// write and read, not sendto and recvfrom: an unconnected netlink
	// socket talks to the kernel, and the addresses would cost an
	// allocation per query.
	if _, err := unix.Write(r.fd, req); err != nil {
		return Route{}, fmt.Errorf("rtnetlink send: %w", err)
	}
	for range 16 {
		n, err := unix.Read(r.fd, r.buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return Route{}, fmt.Errorf("rtnetlink receive: %w", err)
		}
		for b := r.buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(ne.Uint32(b[0:]))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return Route{}, errors.New("rtnetlink: malformed reply")
			}
			typ, seq, data := ne.Uint16(b[4:]), ne.Uint32(b[8:]), b[unix.SizeofNlMsghdr:l]
			b = b[min(len(b), (l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1)):]
			if seq != r.seq {
				continue
			}
			switch typ {
			case unix.RTM_NEWROUTE:
				return parseRoute(data), nil
			case unix.NLMSG_ERROR:
				if len(data) < 4 {
					return Route{}, errors.New("rtnetlink: short error message")
				}
				switch errno := unix.Errno(-int32(ne.Uint32(data[:4]))); errno {
				case 0:
					return Route{}, errors.New("rtnetlink: acknowledgement instead of a route")
				case unix.EHOSTUNREACH, unix.ENETUNREACH, unix.ESRCH, unix.ENODEV:
					return Route{}, errNoRoute
				default:
					return Route{}, fmt.Errorf("rtnetlink: %w", errno)
				}
			}
		}
	}
	return Route{}, errors.New("rtnetlink: no answer to the route query")
}

// parseRoute reads RTA_PREFSRC and RTA_GATEWAY from an rtmsg and its
// attributes.
func parseRoute(data []byte) Route {
	var rt Route
	if len(data) < unix.SizeofRtMsg {
		return rt
	}
	ne := binary.NativeEndian
	for b := data[unix.SizeofRtMsg:]; len(b) >= unix.SizeofRtAttr; {
		l := int(ne.Uint16(b[0:]))
		if l < unix.SizeofRtAttr || l > len(b) {
			break
		}
		typ, val := ne.Uint16(b[2:]), b[unix.SizeofRtAttr:l]
		switch typ {
		case unix.RTA_PREFSRC:
			if a, ok := netip.AddrFromSlice(val); ok {
				rt.Src = a.Unmap()
			}
		case unix.RTA_GATEWAY:
			if a, ok := netip.AddrFromSlice(val); ok {
				rt.Gateway = a.Unmap()
			}
		}
		b = b[min(len(b), (l+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1)):]
	}
	return rt
}

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	var h [unix.SizeofRtAttr]byte
	binary.NativeEndian.PutUint16(h[0:], uint16(l))
	binary.NativeEndian.PutUint16(h[2:], typ)
	b = append(b, h[:]...)
	b = append(b, data...)
	for len(b)%unix.RTA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}
