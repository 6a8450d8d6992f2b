package scanner

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/exposure-monitor/exposure/scanner/netif"
)

// routeCacheMax bounds the per-destination route cache; it is dropped
// wholesale when full (targets come in pseudo-random order, so an LRU
// would not do better).
const routeCacheMax = 4096

// sourceCache picks the source address and next hop for a destination from
// the routing table, asking the kernel over one netlink socket (a
// netif.Router) as a UDP "connect" would, and sending nothing. With a
// binding, routes go through its interface and a destination not routed
// through it is an error (*netif.NoRouteError).
type sourceCache struct {
	m      map[netip.Addr]netif.Route
	bind   *netif.Binding
	router *netif.Router
}

func newSourceCache(b *netif.Binding) *sourceCache {
	return &sourceCache{m: map[netip.Addr]netif.Route{}, bind: b}
}

func (c *sourceCache) source(dst netip.Addr) (netip.Addr, error) {
	if r, ok := c.m[dst]; ok {
		return r.Src, nil
	}
	if c.router == nil {
		r, err := netif.NewRouter(c.bind)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("route to %v: %w", dst, err)
		}
		c.router = r
	}
	r, err := c.router.Lookup(dst)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(c.m) >= routeCacheMax {
		clear(c.m)
	}
	c.m[dst] = r
	return r.Src, nil
}

// nextHop is the address whose link-layer address a frame to dst carries:
// the route's gateway, or dst on the link; invalid when dst's route is not
// (or no longer) cached.
func (c *sourceCache) nextHop(dst netip.Addr) netip.Addr {
	r, ok := c.m[dst]
	switch {
	case !ok:
		return netip.Addr{}
	case r.Gateway.IsValid():
		return r.Gateway
	}
	return dst
}

func (c *sourceCache) close() {
	if c.router != nil {
		c.router.Close()
		c.router = nil
	}
}

// routeSource is the local address the kernel would use towards dst, through
// the interface of b if set.
func routeSource(dst netip.Addr, b *netif.Binding) (netip.Addr, error) {
	d := net.Dialer{Control: b.Control}
	// Port 9 (discard) is arbitrary: a UDP connect sends no packet.
	c, err := d.DialContext(context.Background(), "udp", netip.AddrPortFrom(dst, 9).String())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("route to %v: %w", dst, err)
	}
	defer c.Close()
	ua, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok {
		return netip.Addr{}, fmt.Errorf("route to %v: unexpected local address %v", dst, c.LocalAddr())
	}
	a, ok := netip.AddrFromSlice(ua.IP)
	if !ok {
		return netip.Addr{}, fmt.Errorf("route to %v: bad local address %v", dst, ua.IP)
	}
	return a.Unmap(), nil
}

// ephemeralRange reads the local port range the kernel hands to outgoing
// connections; the scanner's source port must stay outside it, so that no
// connection of this host shares it with our probes.
func ephemeralRange() (lo, hi uint16, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, fmt.Errorf("read ephemeral port range: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("read ephemeral port range: unexpected %q", b)
	}
	l, err1 := strconv.ParseUint(f[0], 10, 16)
	h, err2 := strconv.ParseUint(f[1], 10, 16)
	if err1 != nil || err2 != nil || l > h {
		return 0, 0, fmt.Errorf("read ephemeral port range: unexpected %q", b)
	}
	return uint16(l), uint16(h), nil
}

// pickSourcePort chooses a random port outside [lo, hi], preferring the
// space above the range (below 1024 is avoided: those are services).
func pickSourcePort(lo, hi uint16, r *rand.Rand) (uint16, error) {
	if hi < 65535 && 65535-int(hi) >= 64 {
		return uint16(int(hi) + 1 + r.IntN(65535-int(hi))), nil
	}
	if lo > 1024+64 {
		return uint16(1024 + r.IntN(int(lo)-1024)), nil
	}
	return 0, fmt.Errorf("no source port outside the ephemeral range %d-%d", lo, hi)
}
