package spec

import (
	"crypto/rand"
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
)

// Pairs yields (address, port) pairs to probe. It is consumed by one goroutine.
type Pairs interface {
	// Next returns the next pair, or ok false when there are no more.
	Next() (addr netip.Addr, port uint16, ok bool)
	// Len returns the total number of pairs, including those already returned.
	Len() uint64
}

// OrderOptions tunes NewOrder.
type OrderOptions struct {
	// Sequential walks the pairs address-major in ascending order (every port of the first
	// address, then the next address) instead of in random order.
	Sequential bool
	// Seed keys the random permutation; the same seed gives the same order. 0 draws one from
	// crypto/rand.
	Seed uint64
}

// feistelRounds is enough rounds for a balanced Feistel network to look random (Luby-Rackoff needs
// 4; the extra rounds pay for the cheap round function).
const feistelRounds = 6

// Order enumerates every (address, port) pair of an AddrSet and a Ports exactly once. Its memory is
// a fixed few hundred bytes, whatever the number of pairs: index i of the walk is mapped to pair
// index j by a keyed permutation, and j to (address j mod A, port j div A).
//
// The permutation is a balanced Feistel network over the smallest power of four >= the number of
// pairs, with cycle walking (a result outside [0, Len) is permuted again) to stay in range; the
// domain is at most four times the number of pairs, so a step costs fewer than four evaluations on
// average. An Order is not safe for concurrent use.
type Order struct {
	addrs      *AddrSet
	ports      Ports
	nAddr      uint64
	nPort      uint64
	n          uint64
	i          uint64
	sequential bool
	half       uint
	mask       uint64
	keys       [feistelRounds]uint64
}

var _ Pairs = (*Order)(nil)

// NewOrder returns an Order over all pairs of a and p. When the number of pairs does not fit in a
// uint64 (an IPv6 /64 with many ports), the walk covers the first MaxUint64 pair indexes.
func NewOrder(a *AddrSet, p Ports, o OrderOptions) *Order {
	ord := &Order{addrs: a, ports: p, nAddr: a.Len(), nPort: uint64(p.Len()), sequential: o.Sequential}
	hi, lo := bits.Mul64(ord.nAddr, ord.nPort)
	ord.n = lo
	if hi != 0 {
		ord.n = math.MaxUint64
	}
	if ord.sequential || ord.n == 0 {
		return ord
	}
	// The domain has 2*half bits: an even number >= the bits of n-1, and at least 2.
	b := uint(bits.Len64(ord.n - 1))
	b = max(2, b+b%2)
	ord.half = b / 2
	ord.mask = 1<<ord.half - 1
	seed := o.Seed
	if seed == 0 {
		var buf [8]byte
		_, _ = rand.Read(buf[:]) // crypto/rand.Read never fails since Go 1.24
		seed = binary.LittleEndian.Uint64(buf[:])
	}
	for r := range ord.keys {
		seed, ord.keys[r] = splitmix64(seed)
	}
	return ord
}

// Len returns the number of pairs.
func (o *Order) Len() uint64 { return o.n }

// Done returns how many pairs Next has returned.
func (o *Order) Done() uint64 { return o.i }

// Next returns the next pair.
func (o *Order) Next() (netip.Addr, uint16, bool) {
	if o.i >= o.n {
		return netip.Addr{}, 0, false
	}
	i := o.i
	o.i++
	if o.sequential {
		return o.addrs.At(i / o.nPort), o.ports.At(int(i % o.nPort)), true
	}
	j := o.permute(i)
	for j >= o.n {
		j = o.permute(j)
	}
	return o.addrs.At(j % o.nAddr), o.ports.At(int(j / o.nAddr)), true
}

// permute is the Feistel network: a bijection on [0, 4^half).
func (o *Order) permute(x uint64) uint64 {
	l, r := x>>o.half, x&o.mask
	for _, k := range o.keys {
		l, r = r, l^(mix64(r^k)&o.mask)
	}
	return l<<o.half | r
}

// splitmix64 advances state and returns the new state and an output (Steele et al., SplittableRandom).
func splitmix64(state uint64) (uint64, uint64) {
	state += 0x9e3779b97f4a7c15
	return state, mix64(state)
}

// mix64 is the splitmix64 finaliser, a fast bijective 64-bit hash.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Pair is one (address, port) to probe.
type Pair struct {
	Addr netip.Addr
	Port uint16
}

// NewPairList returns Pairs yielding the given pairs in the given order, for re-probes of a few
// known pairs. The slice is copied.
func NewPairList(pairs []Pair) Pairs {
	return &pairList{p: append([]Pair(nil), pairs...)}
}

type pairList struct {
	p []Pair
	i int
}

func (l *pairList) Next() (netip.Addr, uint16, bool) {
	if l.i >= len(l.p) {
		return netip.Addr{}, 0, false
	}
	p := l.p[l.i]
	l.i++
	return p.Addr, p.Port, true
}

func (l *pairList) Len() uint64 { return uint64(len(l.p)) }
