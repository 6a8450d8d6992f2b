package spec

import (
	"slices"
	"strconv"
	"strings"
)

// portRange is an inclusive range of ports, lo <= hi.
type portRange struct{ lo, hi uint16 }

// Ports is an immutable set of TCP ports stored as merged, sorted ranges, so its size depends on the
// number of ranges, never on the number of ports. The zero value is the empty set.
type Ports struct {
	r []portRange
	// before[k] is the number of ports in r[:k]; it makes At a binary search.
	before []int
}

// AllPorts is every port, 1-65535.
func AllPorts() Ports { return newPorts([]portRange{{1, 65535}}) }

// PortsOf returns the set of the given ports (0 is ignored).
func PortsOf(ports ...uint16) Ports {
	r := make([]portRange, 0, len(ports))
	for _, p := range ports {
		if p != 0 {
			r = append(r, portRange{p, p})
		}
	}
	return newPorts(r)
}

// ParsePorts parses a port spec: a comma-separated list whose elements are a port ("80"), a range
// ("1-1024"; as in nmap, "-1024" starts at 1, "60000-" ends at 65535 and "-" is every port), or
// "top:N" (nmap's N most frequent TCP ports, 1 <= N <= 1000). Spaces around elements are ignored; duplicates and overlaps are merged.
// Errors are *Error naming the bad element.
func ParsePorts(s string) (Ports, error) {
	if strings.TrimSpace(s) == "" {
		return Ports{}, errorf(s, reasonEmptyPorts)
	}
	var r []portRange
	for elem := range strings.SplitSeq(s, ",") {
		elem = strings.TrimSpace(elem)
		switch {
		case elem == "":
			return Ports{}, errorf(s, reasonEmptyElement)
		case len(elem) >= len("top:") && strings.EqualFold(elem[:len("top:")], "top:"):
			num := strings.TrimSpace(elem[len("top:"):])
			n, err := strconv.Atoi(num)
			if err != nil || !isDigits(num) || n < 1 || n > MaxTop {
				return Ports{}, errorf(elem, reasonTop)
			}
			for _, p := range topTCP[:n] {
				r = append(r, portRange{p, p})
			}
		default:
			x, err := parseRange(elem)
			if err != nil {
				return Ports{}, err
			}
			r = append(r, x)
		}
	}
	return newPorts(r), nil
}

// parseRange parses "P", "A-B", or nmap's open ranges "-B" (1-B), "A-" (A-65535) and "-" (all).
func parseRange(elem string) (portRange, error) {
	lo, hi, isRange := strings.Cut(elem, "-")
	if !isRange {
		p, err := parsePort(elem, lo)
		return portRange{p, p}, err
	}
	a, b := uint16(1), uint16(65535)
	var err error
	if strings.TrimSpace(lo) != "" {
		if a, err = parsePort(elem, lo); err != nil {
			return portRange{}, err
		}
	}
	if strings.TrimSpace(hi) != "" {
		if b, err = parsePort(elem, hi); err != nil {
			return portRange{}, err
		}
	}
	if b < a {
		return portRange{}, errorf(elem, reasonEndBefore)
	}
	return portRange{a, b}, nil
}

func isDigits(s string) bool { return s != "" && strings.TrimLeft(s, "0123456789") == "" }

// parsePort parses one port number of element elem.
func parsePort(elem, s string) (uint16, error) {
	s = strings.TrimSpace(s)
	if !isDigits(s) {
		return 0, errorf(elem, reasonNotPort)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, errorf(elem, reasonPortRange)
	}
	return uint16(n), nil
}

// newPorts sorts and merges r (which it may modify) and builds the index.
func newPorts(r []portRange) Ports {
	if len(r) == 0 {
		return Ports{}
	}
	slices.SortFunc(r, func(a, b portRange) int { return int(a.lo) - int(b.lo) })
	out := r[:1]
	for _, x := range r[1:] {
		last := &out[len(out)-1]
		if int(x.lo) <= int(last.hi)+1 {
			last.hi = max(last.hi, x.hi)
			continue
		}
		out = append(out, x)
	}
	out = slices.Clip(out)
	before := make([]int, len(out))
	n := 0
	for i, x := range out {
		before[i] = n
		n += int(x.hi) - int(x.lo) + 1
	}
	return Ports{r: out, before: before}
}

// Len returns the number of ports in the set.
func (p Ports) Len() int {
	if len(p.r) == 0 {
		return 0
	}
	last := p.r[len(p.r)-1]
	return p.before[len(p.r)-1] + int(last.hi) - int(last.lo) + 1
}

// At returns the i-th smallest port, 0 <= i < Len(). It panics when i is out of range, like a slice.
func (p Ports) At(i int) uint16 {
	if i < 0 || i >= p.Len() {
		panic("spec: Ports.At index out of range")
	}
	// The last range whose first index is <= i.
	k, found := slices.BinarySearch(p.before, i)
	if !found {
		k--
	}
	return p.r[k].lo + uint16(i-p.before[k])
}

// Contains reports whether port is in the set.
func (p Ports) Contains(port uint16) bool {
	k, found := slices.BinarySearchFunc(p.r, port, func(x portRange, t uint16) int { return int(x.lo) - int(t) })
	if found {
		return true
	}
	return k > 0 && port <= p.r[k-1].hi
}

// Ranges returns the number of merged ranges, a measure of the set's memory.
func (p Ports) Ranges() int { return len(p.r) }

// Equal reports whether p and q hold the same ports.
func (p Ports) Equal(q Ports) bool { return slices.Equal(p.r, q.r) }

// String returns the canonical spec of the set: ascending merged ranges ("22,80,8080-8090"),
// which ParsePorts turns back into the same set. The empty set is "".
func (p Ports) String() string {
	var b strings.Builder
	for i, x := range p.r {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(x.lo)))
		if x.hi != x.lo {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(x.hi)))
		}
	}
	return b.String()
}
