package spec

import (
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
)

// u128 is a position in the single address space the package works in: IPv6, with IPv4 addresses
// at their IPv4-mapped positions (::ffff:a.b.c.d).
type u128 struct{ hi, lo uint64 }

var maxU128 = u128{math.MaxUint64, math.MaxUint64}

func fromAddr(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// addr returns the address at x, unmapped to IPv4 where it is an IPv4-mapped address.
func (x u128) addr() netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], x.hi)
	binary.BigEndian.PutUint64(b[8:], x.lo)
	return netip.AddrFrom16(b).Unmap()
}

func (x u128) cmp(y u128) int {
	switch {
	case x.hi < y.hi:
		return -1
	case x.hi > y.hi:
		return 1
	case x.lo < y.lo:
		return -1
	case x.lo > y.lo:
		return 1
	}
	return 0
}

func (x u128) addU64(n uint64) u128 {
	lo, c := bits.Add64(x.lo, n, 0)
	return u128{x.hi + c, lo}
}

func (x u128) add1() u128 { return x.addU64(1) }

func (x u128) sub1() u128 {
	lo, b := bits.Sub64(x.lo, 1, 0)
	return u128{x.hi - b, lo}
}

func (x u128) or(y u128) u128 { return u128{x.hi | y.hi, x.lo | y.lo} }

// hostMask returns the mask of the low 128-bits bits.
func hostMask(bitsLen int) u128 {
	n := 128 - bitsLen
	switch {
	case n <= 0:
		return u128{}
	case n >= 128:
		return maxU128
	case n >= 64:
		return u128{math.MaxUint64 >> (128 - n), math.MaxUint64}
	}
	return u128{0, math.MaxUint64 >> (64 - n)}
}

// addrRange is an inclusive range of the address space, lo <= hi.
type addrRange struct{ lo, hi u128 }

// size returns hi-lo+1, saturated at MaxUint64.
func (r addrRange) size() uint64 {
	hi, b := bits.Sub64(r.hi.lo, r.lo.lo, 0)
	top := r.hi.hi - r.lo.hi - b
	if top != 0 || hi == math.MaxUint64 {
		return math.MaxUint64
	}
	return hi + 1
}

func satAdd(a, b uint64) uint64 {
	s, c := bits.Add64(a, b, 0)
	if c != 0 {
		return math.MaxUint64
	}
	return s
}
