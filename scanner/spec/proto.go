package spec

import (
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
