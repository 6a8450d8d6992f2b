package spec

import (
	"net/netip"
	"slices"
	"strings"
)

// AddrSet is an immutable set of IPv4 and IPv6 addresses stored as merged, sorted ranges, never as a
// list, plus the hostname each resolved address came from. IPv4 addresses sort before global IPv6
// ones (they live at ::ffff:0:0/96). A nil *AddrSet is empty.
type AddrSet struct {
	r []addrRange
	// before[k] is the number of addresses in r[:k], saturated at MaxUint64.
	before []uint64
	names  map[netip.Addr]string
}

// AddrSetOf returns the set of the given addresses (invalid ones are skipped, zones dropped,
// IPv4-mapped IPv6 unmapped).
func AddrSetOf(addrs ...netip.Addr) *AddrSet {
	r := make([]addrRange, 0, len(addrs))
	for _, a := range addrs {
		if a.IsValid() {
			x := fromAddr(normalize(a))
			r = append(r, addrRange{x, x})
		}
	}
	return newAddrSet(mergeRanges(r), nil)
}

func normalize(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

func newAddrSet(r []addrRange, names map[netip.Addr]string) *AddrSet {
	s := &AddrSet{r: r, before: make([]uint64, len(r)), names: names}
	var n uint64
	for i, x := range r {
		s.before[i] = n
		n = satAdd(n, x.size())
	}
	for a := range names {
		if !s.Contains(a) {
			delete(names, a)
		}
	}
	return s
}

// mergeRanges sorts r in place and merges overlapping and adjacent ranges.
func mergeRanges(r []addrRange) []addrRange {
	if len(r) == 0 {
		return nil
	}
	slices.SortFunc(r, func(a, b addrRange) int { return a.lo.cmp(b.lo) })
	out := r[:1]
	for _, x := range r[1:] {
		last := &out[len(out)-1]
		if last.hi == maxU128 || x.lo.cmp(last.hi.add1()) <= 0 {
			if x.hi.cmp(last.hi) > 0 {
				last.hi = x.hi
			}
			continue
		}
		out = append(out, x)
	}
	return slices.Clip(out)
}

// subtractRanges returns a minus b; both must be merged and sorted.
func subtractRanges(a, b []addrRange) []addrRange {
	var out []addrRange
	j := 0
	for _, x := range a {
		for j < len(b) && b[j].hi.cmp(x.lo) < 0 {
			j++
		}
		lo, covered := x.lo, false
		for k := j; k < len(b) && b[k].lo.cmp(x.hi) <= 0; k++ {
			if b[k].lo.cmp(lo) > 0 {
				out = append(out, addrRange{lo, b[k].lo.sub1()})
			}
			if b[k].hi.cmp(x.hi) >= 0 {
				covered = true
				break
			}
			lo = b[k].hi.add1()
		}
		if !covered {
			out = append(out, addrRange{lo, x.hi})
		}
	}
	return out
}

// Len returns the number of addresses, saturated at MaxUint64 (an IPv6 /64 or larger).
func (s *AddrSet) Len() uint64 {
	if s == nil || len(s.r) == 0 {
		return 0
	}
	return satAdd(s.before[len(s.r)-1], s.r[len(s.r)-1].size())
}

// At returns the i-th address in ascending order, 0 <= i < Len(). It panics when i is out of range.
func (s *AddrSet) At(i uint64) netip.Addr {
	if i >= s.Len() {
		panic("spec: AddrSet.At index out of range")
	}
	k, found := slices.BinarySearch(s.before, i)
	if !found {
		k--
	}
	return s.r[k].lo.addU64(i - s.before[k]).addr()
}

// Contains reports whether a is in the set.
func (s *AddrSet) Contains(a netip.Addr) bool {
	if s == nil || !a.IsValid() {
		return false
	}
	x := fromAddr(normalize(a))
	k, found := slices.BinarySearchFunc(s.r, x, func(r addrRange, t u128) int { return r.lo.cmp(t) })
	return found || (k > 0 && x.cmp(s.r[k-1].hi) <= 0)
}

// Name returns the hostname a was resolved from, or "" when a came from an address, CIDR or range.
// When several hostnames resolve to a, the first one in the spec wins.
func (s *AddrSet) Name(a netip.Addr) string {
	if s == nil || !a.IsValid() {
		return ""
	}
	return s.names[normalize(a)]
}

// Ranges returns the number of merged ranges, a measure of the set's memory.
func (s *AddrSet) Ranges() int {
	if s == nil {
		return 0
	}
	return len(s.r)
}

// String lists the set's ranges, "198.18.0.0-198.18.0.255,2001:2::1".
func (s *AddrSet) String() string {
	if s == nil {
		return ""
	}
	var b strings.Builder
	for _, x := range s.r {
		// A range that crosses into or out of the IPv4 block is written as one range per family,
		// so that the text parses back ("198.18.0.1-2001:2::1" is not a range).
		for _, part := range splitFamilies(x) {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(part.lo.addr().String())
			if part.hi != part.lo {
				b.WriteByte('-')
				b.WriteString(part.hi.addr().String())
			}
		}
	}
	return b.String()
}

// v4Block is the IPv4 addresses' place in the address space, ::ffff:0:0/96.
var v4Block = addrRange{u128{0, 0xffff << 32}, u128{0, 0xffff<<32 | 0xffffffff}}

// splitFamilies cuts r at the edges of v4Block, so that each part lies in one address family.
func splitFamilies(r addrRange) []addrRange {
	var out []addrRange
	if r.lo.cmp(v4Block.lo) < 0 {
		out = append(out, addrRange{r.lo, minU128(r.hi, v4Block.lo.sub1())})
	}
	if lo, hi := maxU128Of(r.lo, v4Block.lo), minU128(r.hi, v4Block.hi); lo.cmp(hi) <= 0 {
		out = append(out, addrRange{lo, hi})
	}
	if r.hi.cmp(v4Block.hi) > 0 {
		out = append(out, addrRange{maxU128Of(r.lo, v4Block.hi.add1()), r.hi})
	}
	return out
}

func minU128(x, y u128) u128 {
	if x.cmp(y) < 0 {
		return x
	}
	return y
}

func maxU128Of(x, y u128) u128 {
	if x.cmp(y) > 0 {
		return x
	}
	return y
}

// Index returns the position of a in the set's ascending order, the i with At(i) == a, and whether a
// is in the set. Positions past MaxUint64 (beyond an IPv6 /64's worth of addresses before a) saturate.
func (s *AddrSet) Index(a netip.Addr) (uint64, bool) {
	if s == nil || !a.IsValid() {
		return 0, false
	}
	x := fromAddr(normalize(a))
	k, found := slices.BinarySearchFunc(s.r, x, func(r addrRange, t u128) int { return r.lo.cmp(t) })
	if !found {
		if k == 0 || x.cmp(s.r[k-1].hi) > 0 {
			return 0, false
		}
		k--
	}
	lo := s.r[k].lo
	if x.hi != lo.hi {
		// x - lo does not fit 64 bits unless the borrow cancels the
		// difference of the high words.
		if x.hi != lo.hi+1 || x.lo >= lo.lo {
			return satAdd(s.before[k], ^uint64(0)), true
		}
	}
	return satAdd(s.before[k], x.lo-lo.lo), true
}
