package spec

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// LookupFunc resolves a hostname to its addresses. net.DefaultResolver.LookupNetIP with network
// "ip" is the default; tests pass their own.
type LookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

// Targets is a parsed target spec: static address ranges, hostnames to resolve at scan time, and
// exclusions of either kind. It never holds expanded address lists.
type Targets struct {
	static, staticExcl []addrRange // merged
	hostnames          []string    // in spec order, deduplicated
	exclHostnames      []string
}

// ParseTargets parses the hosts and exclude lists. Each element is an IPv4 or IPv6 address, a CIDR
// prefix (host bits are masked off, as nmap does: 198.18.0.7/24 is 198.18.0.0/24), a dash range
// ("198.18.0.1-20" over the last octet, or "198.18.0.1-198.18.1.5" and "2001:2::1-2001:2::ff" between
// two addresses), or an RFC 1123 hostname, resolved later by Resolve. An element may hold several
// targets separated by commas. Nothing is looked up here. Errors are *Error.
func ParseTargets(hosts, exclude []string) (*Targets, error) {
	t := &Targets{}
	var static, excl []addrRange
	for _, list := range []struct {
		in    []string
		r     *[]addrRange
		names *[]string
	}{{hosts, &static, &t.hostnames}, {exclude, &excl, &t.exclHostnames}} {
		for _, elem := range list.in {
			if strings.TrimSpace(elem) == "" {
				return nil, errorf(elem, reasonEmptyTarget)
			}
			for field := range strings.SplitSeq(elem, ",") {
				r, host, err := parseTarget(strings.TrimSpace(field))
				if err != nil {
					return nil, err
				}
				if host != "" {
					if !slices.Contains(*list.names, host) {
						*list.names = append(*list.names, host)
					}
					continue
				}
				*list.r = append(*list.r, r)
			}
		}
	}
	if len(static) == 0 && len(t.hostnames) == 0 {
		return nil, errorf(strings.Join(hosts, ","), reasonEmptyTargets)
	}
	t.static = mergeRanges(static)
	t.staticExcl = mergeRanges(excl)
	return t, nil
}

// parseTarget parses one target. It returns either a range or a (lower-cased) hostname.
func parseTarget(s string) (addrRange, string, error) {
	switch {
	case s == "":
		return addrRange{}, "", errorf(s, reasonEmptyTarget)
	case strings.Contains(s, "/"):
		r, err := parsePrefix(s)
		return r, "", err
	case strings.Contains(s, "%"):
		return addrRange{}, "", errorf(s, reasonZone)
	}
	if left, right, ok := strings.Cut(s, "-"); ok {
		if a, err := netip.ParseAddr(left); err == nil {
			r, err := parseAddrRange(s, a, right)
			return r, "", err
		}
		// Not an address on the left: a hostname such as "web-1.example.test".
	}
	if strings.Contains(s, ":") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return addrRange{}, "", errorf(s, reasonBadAddr)
		}
		x := fromAddr(a.Unmap())
		return addrRange{x, x}, "", nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		x := fromAddr(a)
		return addrRange{x, x}, "", nil
	}
	host, err := parseHostname(s)
	return addrRange{}, host, err
}

func parsePrefix(s string) (addrRange, error) {
	if strings.Contains(s, "%") {
		return addrRange{}, errorf(s, reasonZone)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return addrRange{}, errorf(s, reasonBadPrefix)
	}
	a, bitsLen := p.Addr(), p.Bits()
	if a.Is4() {
		bitsLen += 96
	}
	// As16 maps IPv4 into ::ffff:0:0/96, so one mask works for both families; an IPv4-mapped IPv6
	// prefix shorter than /96 simply covers more than IPv4.
	lo := fromAddr(a)
	m := hostMask(bitsLen)
	lo = u128{lo.hi &^ m.hi, lo.lo &^ m.lo}
	return addrRange{lo, lo.or(m)}, nil
}

// parseAddrRange parses the part after the dash of "start-end": a full address of the same family, or
// for IPv4 a last octet.
func parseAddrRange(s string, start netip.Addr, end string) (addrRange, error) {
	start = start.Unmap()
	var last netip.Addr
	if n, err := strconv.ParseUint(end, 10, 8); err == nil && isDigits(end) && start.Is4() {
		b := start.As4()
		b[3] = byte(n)
		last = netip.AddrFrom4(b)
	} else {
		a, err := netip.ParseAddr(end)
		if err != nil {
			return addrRange{}, errorf(s, reasonBadRange)
		}
		if a.Zone() != "" {
			return addrRange{}, errorf(s, reasonZone)
		}
		last = a.Unmap()
	}
	if start.Is4() != last.Is4() {
		return addrRange{}, errorf(s, reasonMixedFamily)
	}
	lo, hi := fromAddr(start), fromAddr(last)
	if hi.cmp(lo) < 0 {
		return addrRange{}, errorf(s, reasonEndBefore)
	}
	return addrRange{lo, hi}, nil
}

// parseHostname validates an RFC 1123 host name: dot-separated labels of 1-63 letters, digits and
// hyphens, not starting or ending with a hyphen, at most 253 characters, an optional final dot. A name
// whose last label is numeric is a mistyped IPv4 address ("198.18.0.256"), not a hostname.
func parseHostname(s string) (string, error) {
	name := strings.TrimSuffix(s, ".")
	if name == "" || len(name) > 253 {
		return "", errorf(s, reasonBadHostname)
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", errorf(s, reasonBadHostname)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return "", errorf(s, reasonBadHostname)
			}
		}
	}
	if isDigits(labels[len(labels)-1]) {
		return "", errorf(s, reasonBadAddr)
	}
	return strings.ToLower(name), nil
}

// StaticCount returns the number of addresses the spec covers before DNS: static ranges minus
// static exclusions, plus one for each distinct hostname. It saturates at MaxUint64 (an IPv6 /64
// already does). Config uses it to refuse accidentally huge targets.
func (t *Targets) StaticCount() uint64 {
	var n uint64
	for _, r := range subtractRanges(t.static, t.staticExcl) {
		n = satAdd(n, r.size())
	}
	return satAdd(n, uint64(len(t.hostnames)))
}

// Hostnames returns the hostnames of the hosts list, in spec order.
func (t *Targets) Hostnames() []string { return append([]string(nil), t.hostnames...) }

// ErrNoAddresses is returned (wrapped) by Resolve when a hostname resolves to no address.
var ErrNoAddresses = errors.New("no addresses")

// Resolve looks every hostname up (on every call, so DNS changes between scans are seen), adds the
// addresses to the static ranges, removes duplicates, and subtracts the exclusions, whose hostnames
// are resolved too. A nil lookup uses net.DefaultResolver. A failed lookup fails the whole call: a
// scan that silently dropped a host would later report it as gone.
func (t *Targets) Resolve(ctx context.Context, lookup LookupFunc) (*AddrSet, error) {
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	names := make(map[netip.Addr]string)
	include, err := resolveInto(ctx, lookup, t.static, t.hostnames, names)
	if err != nil {
		return nil, err
	}
	exclude, err := resolveInto(ctx, lookup, t.staticExcl, t.exclHostnames, nil)
	if err != nil {
		return nil, err
	}
	return newAddrSet(subtractRanges(include, exclude), names), nil
}

// resolveInto returns static plus the addresses of hosts, merged. When names is not nil it records
// the first hostname of every resolved address.
func resolveInto(ctx context.Context, lookup LookupFunc, static []addrRange, hosts []string, names map[netip.Addr]string) ([]addrRange, error) {
	if len(hosts) == 0 {
		return static, nil
	}
	r := append([]addrRange(nil), static...)
	for _, h := range hosts {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("resolve %s: %w", h, err)
		}
		addrs, err := lookup(ctx, h)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", h, err)
		}
		n := 0
		for _, a := range addrs {
			if !a.IsValid() {
				continue
			}
			a = normalize(a)
			x := fromAddr(a)
			r = append(r, addrRange{x, x})
			n++
			if _, ok := names[a]; !ok && names != nil {
				names[a] = h
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("resolve %s: %w", h, ErrNoAddresses)
		}
	}
	return mergeRanges(r), nil
}
