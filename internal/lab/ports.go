package lab

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// top100 are nmap's 100 most frequent TCP ports (nmap -F), all of which are
// in any top:N port list with N >= 100.
var top100 = [...]uint16{7, 9, 13, 21, 22, 23, 25, 26, 37, 53, 79, 80, 81, 88, 106, 110, 111, 113, 119, 135,
	139, 143, 144, 179, 199, 389, 427, 443, 444, 445, 465, 513, 514, 515, 543, 544, 548, 554, 587, 631,
	646, 873, 990, 993, 995, 1025, 1026, 1027, 1028, 1029, 1110, 1433, 1720, 1723, 1755, 1900, 2000, 2001, 2049, 2121,
	2717, 3000, 3128, 3306, 3389, 3986, 4899, 5000, 5009, 5051, 5060, 5101, 5190, 5357, 5432, 5631, 5666, 5800, 5900, 6000,
	6001, 6646, 7070, 8000, 8008, 8009, 8080, 8081, 8443, 8888, 9100, 9999, 10000, 32768, 49152, 49153, 49154, 49155, 49156, 49157}

// PortPlan says which ports each host of a many-host lab listens on: fixed
// ports on every host plus a per-host random choice from nmap's top 100 that
// is the same for the same seed and host, so a benchmark knows the exact
// expected result.
type PortPlan struct {
	fixed  []uint16
	random int
}

// ParsePortPlan parses a comma-separated list of ports and at most one
// "rand:N" (N random top-100 ports per host), e.g. "22,80,rand:3". The empty
// string opens nothing.
func ParsePortPlan(s string) (PortPlan, error) {
	var p PortPlan
	if strings.TrimSpace(s) == "" {
		return p, nil
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if n, ok := strings.CutPrefix(item, "rand:"); ok {
			v, err := strconv.Atoi(n)
			if err != nil || v < 1 || v > 50 {
				return PortPlan{}, fmt.Errorf("port plan %q: %q: want rand:N with N in 1..50", s, item)
			}
			if p.random != 0 {
				return PortPlan{}, fmt.Errorf("port plan %q: more than one rand:N", s)
			}
			p.random = v
			continue
		}
		v, err := strconv.ParseUint(item, 10, 16)
		if err != nil || v == 0 {
			return PortPlan{}, fmt.Errorf("port plan %q: %q: not a port number 1..65535", s, item)
		}
		if !slices.Contains(p.fixed, uint16(v)) {
			p.fixed = append(p.fixed, uint16(v))
		}
	}
	return p, nil
}

// String returns the plan in ParsePortPlan's syntax.
func (p PortPlan) String() string {
	var parts []string
	for _, f := range p.fixed {
		parts = append(parts, strconv.Itoa(int(f)))
	}
	if p.random > 0 {
		parts = append(parts, "rand:"+strconv.Itoa(p.random))
	}
	return strings.Join(parts, ",")
}

// Ports returns the sorted ports host number host opens under seed.
func (p PortPlan) Ports(seed uint64, host int) []uint16 {
	ports := slices.Clone(p.fixed)
	if p.random > 0 {
		r := rand.New(rand.NewPCG(seed, uint64(host)))
		for _, i := range r.Perm(len(top100)) {
			if len(ports) == len(p.fixed)+p.random {
				break
			}
			if !slices.Contains(ports, top100[i]) {
				ports = append(ports, top100[i])
			}
		}
	}
	slices.Sort(ports)
	return ports
}
