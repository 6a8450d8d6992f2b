package spec

import (
	"bytes"
	"cmp"
	"errors"
	"strconv"
	"strings"
)

// Transport protocols of a PortSpec, as snapshots name them.
const (
	ProtoTCP = "tcp"
	ProtoUDP = "udp"
)

// reasonUDPTop is the error reason of a bad udp-top:N.
const reasonUDPTop = "udp-top:N needs N in 1-1000"

// PortSpec is a port spec with protocols: the TCP and the UDP ports to scan.
type PortSpec struct {
	TCP, UDP Ports
}

// ParsePortSpec parses a port spec with nmap's protocol prefixes: "T:" and "U:" switch the protocol
// of the element they start and of the elements after it ("T:22,80,U:53,161"), "udp-top:N" adds
// the N most frequent UDP ports, and everything ParsePorts accepts keeps its meaning: bare
// numbers, ranges and "-" belong to the current protocol (TCP until a prefix says otherwise), and
// "top:N" is always TCP. Errors are *Error naming the bad element.
func ParsePortSpec(s string) (PortSpec, error) {
	if strings.TrimSpace(s) == "" {
		return PortSpec{}, errorf(s, reasonEmptyPorts)
	}
	var tcp, udp []portRange
	proto := ProtoTCP
	for elem := range strings.SplitSeq(s, ",") {
		elem = strings.TrimSpace(elem)
		orig := elem
		if len(elem) >= 2 && elem[1] == ':' {
			switch elem[0] {
			case 'T', 't':
				proto, elem = ProtoTCP, strings.TrimSpace(elem[2:])
			case 'U', 'u':
				proto, elem = ProtoUDP, strings.TrimSpace(elem[2:])
			}
		}
		switch {
		case elem == "":
			return PortSpec{}, errorf(orig, reasonEmptyElement)
		case hasPrefixFold(elem, "udp-top:"):
			n, ok := topN(elem[len("udp-top:"):], MaxTopUDP)
			if !ok {
				return PortSpec{}, errorf(orig, reasonUDPTop)
			}
			for _, p := range topUDP[:n] {
				udp = append(udp, portRange{p, p})
			}
		case hasPrefixFold(elem, "top:"):
			n, ok := topN(elem[len("top:"):], MaxTop)
			if !ok {
				return PortSpec{}, errorf(orig, reasonTop)
			}
			for _, p := range topTCP[:n] {
				tcp = append(tcp, portRange{p, p})
			}
		default:
			x, err := parseRange(elem)
			if err != nil {
				var e *Error
				if errors.As(err, &e) {
					return PortSpec{}, errorf(orig, e.Reason)
				}
				return PortSpec{}, err
			}
			if proto == ProtoUDP {
				udp = append(udp, x)
			} else {
				tcp = append(tcp, x)
			}
		}
	}
	return PortSpec{TCP: newPorts(tcp), UDP: newPorts(udp)}, nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// topN parses the N of top:N or udp-top:N.
func topN(num string, limit int) (int, bool) {
	num = strings.TrimSpace(num)
	n, err := strconv.Atoi(num)
	if err != nil || !isDigits(num) || n < 1 || n > limit {
		return 0, false
	}
	return n, true
}

// Len is the number of (port, protocol) pairs of the spec.
func (p PortSpec) Len() int { return p.TCP.Len() + p.UDP.Len() }

// Of returns the ports of protocol proto ("tcp" or "udp").
func (p PortSpec) Of(proto string) Ports {
	if proto == ProtoUDP {
		return p.UDP
	}
	return p.TCP
}

// String is the canonical spec: the TCP ports bare, then "U:" and the UDP ports
// ("22,80,U:53,161"); ParsePortSpec turns it back into the same spec.
func (p PortSpec) String() string {
	t, u := p.TCP.String(), p.UDP.String()
	switch {
	case u == "":
		return t
	case t == "":
		return "U:" + u
	}
	return t + ",U:" + u
}

// ProtoPort is one port of one protocol: an entry of a policy list such as
// expect.never_open.
type ProtoPort struct {
	// Proto is ProtoTCP or ProtoUDP.
	Proto string
	Port  uint16
}

// TCP makes a TCP ProtoPort.
func TCP(port uint16) ProtoPort { return ProtoPort{ProtoTCP, port} }

// UDP makes a UDP ProtoPort.
func UDP(port uint16) ProtoPort { return ProtoPort{ProtoUDP, port} }

// reasonProtoPort is the error reason of a bad protocol-qualified port.
const reasonProtoPort = "not a port (examples: 22, T:22, U:161, 161/udp)"

// ParseProtoPort parses one port with its protocol as the port spec writes
// it: "22" and "T:22" are TCP, "U:161" is UDP; nmap's report form
// "161/udp" and "22/tcp" is accepted too. Errors are *Error.
func ParseProtoPort(s string) (ProtoPort, error) {
	elem := strings.TrimSpace(s)
	proto := ProtoTCP
	switch {
	case len(elem) >= 2 && elem[1] == ':' && (elem[0] == 'T' || elem[0] == 't'):
		elem = elem[2:]
	case len(elem) >= 2 && elem[1] == ':' && (elem[0] == 'U' || elem[0] == 'u'):
		proto, elem = ProtoUDP, elem[2:]
	default:
		if num, p, ok := strings.Cut(elem, "/"); ok {
			switch strings.ToLower(strings.TrimSpace(p)) {
			case ProtoTCP:
			case ProtoUDP:
				proto = ProtoUDP
			default:
				return ProtoPort{}, errorf(s, reasonProtoPort)
			}
			elem = num
		}
	}
	elem = strings.TrimSpace(elem)
	if !isDigits(elem) {
		return ProtoPort{}, errorf(s, reasonProtoPort)
	}
	p, err := parsePort(s, elem)
	if err != nil {
		return ProtoPort{}, err
	}
	return ProtoPort{proto, p}, nil
}

// String is the port as the port spec writes it: "22" for TCP, "U:161"
// for UDP; ParseProtoPort reads it back.
func (p ProtoPort) String() string {
	n := strconv.Itoa(int(p.Port))
	if p.Proto == ProtoUDP {
		return "U:" + n
	}
	return n
}

// Label is the port as nmap reports it: "22/tcp", "161/udp".
func (p ProtoPort) Label() string {
	return strconv.Itoa(int(p.Port)) + "/" + cmp.Or(p.Proto, ProtoTCP)
}

// MarshalYAML writes a TCP port as a bare number and a UDP one as
// "U:161", the forms the configuration reads.
func (p ProtoPort) MarshalYAML() (any, error) {
	if p.Proto == ProtoUDP {
		return p.String(), nil
	}
	return p.Port, nil
}

// UnmarshalText reads what ParseProtoPort reads, so a plain YAML or JSON
// decoder fills a ProtoPort too.
func (p *ProtoPort) UnmarshalText(b []byte) error {
	v, err := ParseProtoPort(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// UnmarshalJSON reads a port number (22, TCP) or a string ParseProtoPort
// reads ("U:161").
func (p *ProtoPort) UnmarshalJSON(b []byte) error {
	return p.UnmarshalText(bytes.Trim(b, `"`))
}

// Compare orders ports by number, then protocol (tcp before udp).
func (p ProtoPort) Compare(q ProtoPort) int {
	if p.Port != q.Port {
		if p.Port < q.Port {
			return -1
		}
		return 1
	}
	return strings.Compare(cmp.Or(p.Proto, ProtoTCP), cmp.Or(q.Proto, ProtoTCP))
}

// Contains reports whether the spec scans port p.
func (p PortSpec) Contains(pp ProtoPort) bool { return p.Of(pp.Proto).Contains(pp.Port) }
