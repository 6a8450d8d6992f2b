package scanner

import (
	"fmt"
	"net"
	"net/netip"
)

// zeroNet is 0.0.0.0/8, "this network" (RFC 1122): never a valid destination.
var zeroNet = netip.MustParsePrefix("0.0.0.0/8")

// destGuard refuses destinations no probe may go to: 0.0.0.0/8, the
// unspecified addresses, multicast, the limited broadcast and the directed
// broadcast address of every local IPv4 network. It is checked before every
// send, not only when targets are parsed.
type destGuard struct {
	broadcasts map[netip.Addr]struct{}
}

// newDestGuard collects the directed broadcast addresses of the local
// interfaces.
func newDestGuard() (*destGuard, error) {
	g := &destGuard{broadcasts: map[netip.Addr]struct{}{}}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		p, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		p = p.Unmap()
		ones, bits := ipn.Mask.Size()
		if !p.Is4() || bits != 32 || ones >= 31 {
			continue // /31 and /32 have no broadcast address (RFC 3021)
		}
		b := p.As4()
		host := ^uint32(0) >> ones
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
		g.broadcasts[netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})] = struct{}{}
	}
	return g, nil
}

// check returns a non-nil error naming why dst must not be probed.
func (g *destGuard) check(dst netip.Addr) error {
	d := dst.Unmap()
	switch {
	case !d.IsValid():
		return fmt.Errorf("%v: invalid destination", dst)
	case d.IsUnspecified():
		return fmt.Errorf("%v: unspecified destination", dst)
	case d.Is4() && zeroNet.Contains(d):
		return fmt.Errorf("%v: destination in 0.0.0.0/8", dst)
	case d.IsMulticast():
		return fmt.Errorf("%v: multicast destination", dst)
	case d == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%v: broadcast destination", dst)
	}
	if g != nil {
		if _, ok := g.broadcasts[d]; ok {
			return fmt.Errorf("%v: directed broadcast destination", dst)
		}
	}
	return nil
}
