package snapshot

import (
	"iter"
	"net/netip"
)

// Packed is a snapshot in the form kept in memory between scans (the
// daemon's latest snapshot of each target): a host is 24 bytes and a port
// 8, where a Host is about 110 and a Port 48. What hosts and ports share
// (state, protocol, the service, the hostname, the unlisted counts) is
// stored once and indexed. A Packed is never changed after Pack; the
// Services it points to are shared with the snapshot it was made from,
// which no one changes either.
type Packed struct {
	head      Snapshot // without Hosts
	hosts     []packedHost
	ports     []packedPort
	hostKinds []hostKind
	portKinds []portKind
	nilHosts  bool
}

// packedHost is one host: its address, what it shares with other hosts
// (kind) and the end of its ports in Packed.ports.
type packedHost struct {
	addr [16]byte
	kind uint32
	end  uint32
}

// hostKind is what a host can share with others. raw is the address as
// the snapshot spelled it when the address does not read back the same
// from addr (a zone, a non-canonical spelling): the packed form is exact.
type hostKind struct {
	raw, hostname, state string
	unlisted             Unlisted
	is4, nilPorts        bool
}

type packedPort struct {
	port uint16
	kind uint32
}

type portKind struct {
	protocol, state string
	service         *Service
}

// Pack is s in its packed form.
func Pack(s *Snapshot) *Packed {
	p := &Packed{head: *s, hosts: make([]packedHost, 0, len(s.Hosts))}
	p.head.Hosts, p.nilHosts = nil, s.Hosts == nil
	n := 0
	for i := range s.Hosts {
		n += len(s.Hosts[i].Ports)
	}
	p.ports = make([]packedPort, 0, n)
	hostIdx := map[hostKind]uint32{}
	portIdx := map[portKind]uint32{}
	for i := range s.Hosts {
		h := &s.Hosts[i]
		k := hostKind{hostname: h.Hostname, state: h.State, unlisted: h.Unlisted, nilPorts: h.Ports == nil}
		var ph packedHost
		a, err := netip.ParseAddr(h.Address)
		if err != nil || a.Zone() != "" || a.String() != h.Address {
			k.raw = h.Address
		} else {
			ph.addr, k.is4 = a.As16(), a.Is4()
		}
		ph.kind = index(hostIdx, &p.hostKinds, k)
		for _, pt := range h.Ports {
			pk := portKind{protocol: pt.Protocol, state: pt.State, service: pt.Service}
			p.ports = append(p.ports, packedPort{port: pt.Port, kind: index(portIdx, &p.portKinds, pk)})
		}
		ph.end = uint32(len(p.ports))
		p.hosts = append(p.hosts, ph)
	}
	return p
}

// index is k's place in kinds, appending it the first time.
func index[K comparable](idx map[K]uint32, kinds *[]K, k K) uint32 {
	i, ok := idx[k]
	if !ok {
		i = uint32(len(*kinds))
		idx[k] = i
		*kinds = append(*kinds, k)
	}
	return i
}

// Head is the snapshot without its hosts: target, ID, times, completeness
// and quality.
func (p *Packed) Head() Snapshot { return p.head }

// Len is the number of hosts.
func (p *Packed) Len() int { return len(p.hosts) }

// Unpack is the snapshot p was packed from, as a new Snapshot (its
// Services are shared).
func (p *Packed) Unpack() *Snapshot {
	s := p.head
	if p.nilHosts {
		return &s
	}
	s.Hosts = make([]Host, len(p.hosts))
	ports := make([]Port, len(p.ports))
	for i := range p.hosts {
		lo, hi := p.span(i)
		p.fill(&s.Hosts[i], i, ports[lo:hi:hi])
	}
	return &s
}

// Hosts yields each host with its index, in the snapshot's order. The
// yielded Host and its Ports are reused for the next host: copy what
// must outlive the iteration.
func (p *Packed) Hosts() iter.Seq2[int, *Host] {
	return func(yield func(int, *Host) bool) {
		var h Host
		buf := []Port{}
		for i := range p.hosts {
			lo, hi := p.span(i)
			if cap(buf) < hi-lo {
				buf = make([]Port, hi-lo)
			}
			p.fill(&h, i, buf[:hi-lo])
			if !yield(i, &h) {
				return
			}
		}
	}
}

// Port is port j (in its host's order) of host i, and the host's address.
func (p *Packed) Port(i, j int) (string, Port) {
	lo, _ := p.span(i)
	return p.address(i), p.port(lo + j)
}

// span is where host i's ports are in p.ports.
func (p *Packed) span(i int) (lo, hi int) {
	if i > 0 {
		lo = int(p.hosts[i-1].end)
	}
	return lo, int(p.hosts[i].end)
}

func (p *Packed) address(i int) string {
	h := &p.hosts[i]
	k := &p.hostKinds[h.kind]
	switch {
	case k.raw != "":
		return k.raw
	case k.is4:
		return netip.AddrFrom16(h.addr).Unmap().String()
	}
	return netip.AddrFrom16(h.addr).String()
}

func (p *Packed) port(n int) Port {
	pt := p.ports[n]
	k := &p.portKinds[pt.kind]
	return Port{Port: pt.port, Protocol: k.protocol, State: k.state, Service: k.service}
}

// fill sets h to host i, with its ports written into ports, which has
// exactly their number.
func (p *Packed) fill(h *Host, i int, ports []Port) {
	lo, _ := p.span(i)
	k := &p.hostKinds[p.hosts[i].kind]
	*h = Host{Address: p.address(i), Hostname: k.hostname, State: k.state, Unlisted: k.unlisted}
	if k.nilPorts {
		return
	}
	for j := range ports {
		ports[j] = p.port(lo + j)
	}
	h.Ports = ports
}
