package scanner

import (
	"cmp"
	"iter"
	"math/bits"
	"net/netip"
	"slices"

	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// maxBitsetAddrs is the largest address set whose host flags are kept as
// bitsets (8 MB for 2^26 addresses); beyond, sets of indices.
const maxBitsetAddrs = 1 << 26

// Results are a sweep's verdicts in compact form: a bit per address for
// "up" (and, in small scans, "answered at all"), and 8 bytes per listed
// port (a 40-bit index into the target's address set, the port and its
// state; 16 bytes in sets of more than 2^40 addresses), where a
// *snapshot.Snapshot holds a host struct with its address as a string and
// a port struct with two strings per port. A /16 with 98,304 open ports
// takes 0.9 MB here against about 11 MB as a Snapshot
// (BenchmarkSweepMemory).
//
// Hosts streams the hosts one at a time in the snapshot's order, so that a
// caller that only writes them out (exposure scan --format json or text)
// never holds them all; Snapshot expands them for the callers that keep or
// annotate a snapshot (service detection, the daemon).
type Results struct {
	head   snapshot.Snapshot // everything but Hosts
	addrs  *spec.AddrSet
	proto  string
	small  bool
	up     indexSet
	seen   indexSet // small scans: every address that got a verdict
	ports  portRecs
	states []string          // portRec.state indexes this
	names  map[uint64]string // reverse DNS names, by address index
	// closed counts each address's closed ports (snapshot.Host.Unlisted;
	// one protocol has at most 65,535), and nports is the ports scanned
	// per address: in a complete large sweep the rest of a host's ports,
	// neither listed nor closed, went silent.
	closed counts16
	nports int
}

// maxDenseCounts is the largest address set whose closed counts are kept
// in a slice (2 bytes an address: 8 MB at most); beyond, in a map of the
// addresses with any.
const maxDenseCounts = 1 << 22

// counts16 is a counter per address index.
type counts16 struct {
	dense []uint16
	m     map[uint64]uint16
}

func newCounts16(size uint64) counts16 {
	if size <= maxDenseCounts {
		return counts16{dense: make([]uint16, size)}
	}
	return counts16{m: map[uint64]uint16{}}
}

func (c *counts16) inc(i uint64) {
	if c.m != nil {
		c.m[i]++
		return
	}
	c.dense[i]++
}

func (c *counts16) get(i uint64) uint16 {
	if c.m != nil {
		return c.m[i]
	}
	return c.dense[i]
}

// portRec is one listed port: the host's index in the address set.
type portRec struct {
	idx   uint64
	port  uint16
	state uint8
}

// maxPackedAddrs bounds the address sets whose ports are packed into 8
// bytes (a 40-bit address index, the port, the state); larger sets, which
// no scan gets through anyway, take 16.
const maxPackedAddrs = 1 << 40

// portRecs holds the listed ports, packed when the set allows.
type portRecs struct {
	wide   bool
	packed []uint64
	wides  []portRec
}

func (p *portRecs) add(r portRec) {
	if p.wide {
		p.wides = append(p.wides, r)
		return
	}
	p.packed = append(p.packed, r.idx<<24|uint64(r.port)<<8|uint64(r.state))
}

func (p *portRecs) len() int { return len(p.packed) + len(p.wides) }

func (p *portRecs) at(i int) portRec {
	if p.wide {
		return p.wides[i]
	}
	v := p.packed[i]
	return portRec{idx: v >> 24, port: uint16(v >> 8), state: uint8(v)}
}

// sort orders the ports by host index, then port: the packed form sorts
// as plain integers.
func (p *portRecs) sort() {
	slices.Sort(p.packed)
	slices.SortFunc(p.wides, func(a, b portRec) int {
		return cmp.Or(cmp.Compare(a.idx, b.idx), cmp.Compare(a.port, b.port))
	})
}

func newResults(addrs *spec.AddrSet, proto string, small bool) *Results {
	r := &Results{addrs: addrs, proto: proto, small: small, up: newIndexSet(addrs.Len()), closed: newCounts16(addrs.Len())}
	r.ports.wide = addrs.Len() > maxPackedAddrs
	if small {
		r.seen = newIndexSet(addrs.Len())
	}
	return r
}

// add records one verdict.
func (r *Results) add(res Result) {
	idx, ok := r.addrs.Index(res.Addr)
	if !ok {
		return // not a target: engines answer only for the pairs they got
	}
	if r.small {
		r.seen.add(idx)
	}
	switch res.State {
	case snapshot.StateOpen:
		r.up.add(idx)
		r.ports.add(portRec{idx: idx, port: res.Port, state: r.stateCode(res.State)})
	case snapshot.StateClosed:
		r.up.add(idx)
		r.closed.inc(idx)
	default:
		if r.small {
			r.ports.add(portRec{idx: idx, port: res.Port, state: r.stateCode(res.State)})
		}
	}
}

func (r *Results) stateCode(s string) uint8 {
	if i := slices.Index(r.states, s); i >= 0 {
		return uint8(i)
	}
	r.states = append(r.states, s)
	return uint8(len(r.states) - 1)
}

// finish sorts the ports into the snapshot's order.
func (r *Results) finish() {
	r.ports.sort()
}

// Header is the snapshot without its hosts: target, id, times,
// completeness and quality.
func (r *Results) Header() *snapshot.Snapshot {
	h := r.head
	h.Hosts = nil
	return &h
}

// HostsUp counts the hosts that answered.
func (r *Results) HostsUp() int { return r.up.len() }

// OpenPorts counts the open ports.
func (r *Results) OpenPorts() int {
	n := 0
	for i := range r.ports.len() {
		if r.states[r.ports.at(i).state] == snapshot.StateOpen {
			n++
		}
	}
	return n
}

// Hosts yields the snapshot's hosts in its order (snapshot.Sort's: IPv4,
// then IPv6, by address; ports by number). The yielded Host and its Ports
// are reused for the next host: copy what must outlive the iteration.
func (r *Results) Hosts() iter.Seq[*snapshot.Host] {
	return func(yield func(*snapshot.Host) bool) {
		var h snapshot.Host
		r.each(func(idx uint64, a netip.Addr, lo, hi int) bool {
			r.fill(&h, idx, a, lo, hi, h.Ports[:0])
			return yield(&h)
		})
	}
}

// Snapshot expands the results into a snapshot.
func (r *Results) Snapshot() *snapshot.Snapshot {
	s := r.head
	n := r.up.len()
	if r.small {
		n = r.seen.len()
	}
	s.Hosts = make([]snapshot.Host, 0, n)
	ports := make([]snapshot.Port, 0, r.ports.len())
	r.each(func(idx uint64, a netip.Addr, lo, hi int) bool {
		var h snapshot.Host
		start := len(ports)
		r.fill(&h, idx, a, lo, hi, ports)
		ports = h.Ports
		h.Ports = ports[start:len(ports):len(ports)]
		s.Hosts = append(s.Hosts, h)
		return true
	})
	return &s
}

// fill sets h to the host at idx with the ports r.ports[lo:hi], appended to
// ports.
func (r *Results) fill(h *snapshot.Host, idx uint64, a netip.Addr, lo, hi int, ports []snapshot.Port) {
	h.Address = a.String()
	h.Hostname = r.addrs.Name(a)
	if h.Hostname == "" {
		h.Hostname = r.names[idx]
	}
	h.State = snapshot.HostDown
	if r.up.has(idx) {
		h.State = snapshot.HostUp
	}
	for i := lo; i < hi; i++ {
		p := r.ports.at(i)
		ports = append(ports, snapshot.Port{Port: p.port, Protocol: r.proto, State: r.states[p.state]})
	}
	h.Unlisted = r.unlisted(idx, hi-lo)
	if ports == nil {
		ports = []snapshot.Port{}
	}
	h.Ports = ports
}

// unlisted are the counts of the host at idx, which lists n ports: its
// closed ports, and in a complete large sweep the silent rest (the sweep
// keeps no silent port of a large scan), filtered over TCP and
// open|filtered over UDP.
func (r *Results) unlisted(idx uint64, n int) snapshot.Unlisted {
	var u snapshot.Unlisted
	c := int(r.closed.get(idx))
	u.Add(r.proto, snapshot.StateClosed, uint32(c))
	if !r.small && r.head.Complete {
		silent := snapshot.StateFiltered
		if r.proto == spec.ProtoUDP {
			silent = snapshot.StateOpenFiltered
		}
		if rest := r.nports - n - c; rest > 0 {
			u.Add(r.proto, silent, uint32(rest))
		}
	}
	return u
}

// each calls fn for every listed host with its ports, in snapshot order:
// the address set orders IPv6 addresses below ::ffff:0:0 (::1) before
// IPv4, so IPv4 hosts come in a first pass and the others in a second.
func (r *Results) each(fn func(idx uint64, a netip.Addr, lo, hi int) bool) {
	listed := &r.up
	var also *indexSet
	if r.small {
		also = &r.seen
	}
	for _, v4 := range []bool{true, false} {
		j := 0
		cont := listed.union(also, func(idx uint64) bool {
			a := r.addrs.At(idx)
			n := r.ports.len()
			for j < n && r.ports.at(j).idx < idx {
				j++
			}
			k := j
			for k < n && r.ports.at(k).idx == idx {
				k++
			}
			if a.Is4() != v4 {
				return true
			}
			return fn(idx, a, j, k)
		})
		if !cont {
			return
		}
	}
}

// indexSet is a set of address indices: a bitset for sets of up to
// maxBitsetAddrs addresses, a map beyond.
type indexSet struct {
	bits []uint64
	m    map[uint64]struct{}
	n    int
}

func newIndexSet(size uint64) indexSet {
	if size <= maxBitsetAddrs {
		return indexSet{bits: make([]uint64, (size+63)/64)}
	}
	return indexSet{m: map[uint64]struct{}{}}
}

func (s *indexSet) add(i uint64) {
	if s.m != nil {
		if _, ok := s.m[i]; !ok {
			s.m[i] = struct{}{}
			s.n++
		}
		return
	}
	w, b := i/64, uint64(1)<<(i%64)
	if s.bits[w]&b == 0 {
		s.bits[w] |= b
		s.n++
	}
}

func (s *indexSet) has(i uint64) bool {
	if s.m != nil {
		_, ok := s.m[i]
		return ok
	}
	w := i / 64
	return w < uint64(len(s.bits)) && s.bits[w]&(1<<(i%64)) != 0
}

func (s *indexSet) len() int { return s.n }

// union calls fn for every index in s or in o (nil: s alone) in ascending
// order until fn returns false; it reports whether fn never did.
func (s *indexSet) union(o *indexSet, fn func(uint64) bool) bool {
	if s.m == nil && (o == nil || o.m == nil) {
		for w, word := range s.bits {
			if o != nil {
				word |= o.bits[w]
			}
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &^= 1 << b
				if !fn(uint64(w)*64 + uint64(b)) {
					return false
				}
			}
		}
		return true
	}
	keys := make([]uint64, 0, s.n)
	for k := range s.m {
		keys = append(keys, k)
	}
	if o != nil {
		for k := range o.m {
			if _, dup := s.m[k]; !dup {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !fn(k) {
			return false
		}
	}
	return true
}

// hostSet is a set of addresses that keeps IPv4 ones as 4-byte keys (a
// netip.Addr key is 24 bytes): the SYN engine's hosts that answered, which
// in a sweep of a /16 is every one of 65,536.
type hostSet struct {
	v4 map[uint32]struct{}
	v6 map[netip.Addr]struct{}
}

func newHostSet() *hostSet {
	return &hostSet{v4: map[uint32]struct{}{}, v6: map[netip.Addr]struct{}{}}
}

func (s *hostSet) add(a netip.Addr) {
	if a.Is4() {
		b := a.As4()
		s.v4[uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3])] = struct{}{}
		return
	}
	s.v6[a] = struct{}{}
}

func (s *hostSet) has(a netip.Addr) bool {
	if a.Is4() {
		b := a.As4()
		_, ok := s.v4[uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3])]
		return ok
	}
	_, ok := s.v6[a]
	return ok
}

func (s *hostSet) len() int { return len(s.v4) + len(s.v6) }
