package scanner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// synWindow is the TCP window advertised in probes (nmap uses 1024 too).
const synWindow = 1024

// mssOption is the one option a probe carries: real stacks send it, and a
// bare SYN stands out to some middleboxes.
var mssOption = []byte{0x05, 0xb4} // 1460

// packetBuilder serialises SYN probes. It is not safe for concurrent use: the
// engine loop owns one. The headers are written by hand (the tests decode
// them with gopacket/layers): importing gopacket/layers into the binary
// costs 7 MB of tables its init fills (65,536-entry metadata arrays for
// EtherTypes and PPP types), a third of a scan's memory.
type packetBuilder struct{}

func newPacketBuilder() *packetBuilder { return &packetBuilder{} }

// Header fields of an IPv4 probe, as the kernel would fill them for a raw
// TCP socket.
const (
	ipv4HeaderLen = 20
	probeTTL      = 64
	synLen        = 24 // TCP header with the MSS option
	protoTCP      = 6
	protoUDP      = 17
	protoICMPv4   = 1
	// ICMP destination unreachable, IPv4 and IPv6.
	icmp4Unreach = 3
	icmp6Unreach = 1
)

// syn4 appends an IPv4 packet carrying a SYN segment from src:sport to
// dst:dport with sequence number seq to out: the IPv4 header (header
// checksum computed) and the segment as syn builds it. It is what an
// IPPROTO_RAW socket sends. The identification is left 0 for the kernel
// to choose.
func (b *packetBuilder) syn4(out []byte, src, dst netip.Addr, sport, dport uint16, seq uint32) ([]byte, error) {
	if !src.Is4() || !dst.Is4() {
		return out, fmt.Errorf("build syn: %v -> %v: not IPv4", src, dst)
	}
	start := len(out)
	s4, d4 := src.As4(), dst.As4()
	out = append(out,
		0x45, 0, // version 4, IHL 5; TOS
		0, ipv4HeaderLen+synLen, // total length
		0, 0, // identification
		0x40, 0, // don't fragment
		probeTTL, protoTCP,
		0, 0) // header checksum
	out = append(out, s4[:]...)
	out = append(out, d4[:]...)
	hdr := out[start:]
	binary.BigEndian.PutUint16(hdr[10:12], ^uint16(fold(sum16(hdr[:ipv4HeaderLen]))))
	return b.syn(out, src, dst, sport, dport, seq)
}

// syn appends a SYN segment from src:sport to dst:dport with sequence number
// seq to out, its checksum computed over the IPv4 or IPv6 pseudo-header.
func (b *packetBuilder) syn(out []byte, src, dst netip.Addr, sport, dport uint16, seq uint32) ([]byte, error) {
	start := len(out)
	out = binary.BigEndian.AppendUint16(out, sport)
	out = binary.BigEndian.AppendUint16(out, dport)
	out = binary.BigEndian.AppendUint32(out, seq)
	out = append(out,
		0, 0, 0, 0, // acknowledgement
		(synLen/4)<<4, 0x02, // data offset; SYN
		synWindow>>8, synWindow&0xff,
		0, 0, // checksum
		0, 0, // urgent pointer
		2, 4, mssOption[0], mssOption[1]) // MSS
	seg := out[start:]
	binary.BigEndian.PutUint16(seg[16:18], tcpChecksum(src, dst, seg))
	return out, nil
}

func fold(sum uint32) uint32 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return sum
}

// tcpChecksum is the TCP checksum of seg (checksum field zeroed) over the
// pseudo-header of RFC 793 (IPv4) or RFC 8200 section 8.1 (IPv6).
func tcpChecksum(src, dst netip.Addr, seg []byte) uint16 {
	var sum uint32
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		sum += sum16(s[:]) + sum16(d[:])
		sum += protoTCP + uint32(len(seg))
	} else {
		s, d := src.As16(), dst.As16()
		sum += sum16(s[:]) + sum16(d[:])
		n := uint32(len(seg))
		sum += n>>16 + n&0xffff + protoTCP
	}
	sum += sum16(seg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func sum16(b []byte) uint32 {
	var s uint32
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// replyKind says what a decoded packet is.
type replyKind uint8

const (
	replySynAck replyKind = iota + 1
	replyRST
	replyUnreach
)

// reply is a decoded candidate answer to one of our probes, seen from our
// side: Local is our address, Remote the probed one.
type reply struct {
	kind       replyKind
	local      netip.Addr
	remote     netip.Addr
	localPort  uint16 // our fixed source port
	remotePort uint16 // the probed port
	// ack is the acknowledgement number of a SYN-ACK or RST; for ICMP it is
	// the sequence number of the quoted probe.
	ack uint32
	// icmp is the type and code of an ICMP error, for the reason string.
	icmp [2]uint8
}

// reason is the nmap-style reason string of a reply.
func (r reply) reason() string {
	switch r.kind {
	case replySynAck:
		return "syn-ack"
	case replyRST:
		return "reset"
	default:
		return fmt.Sprintf("icmp-unreach type %d code %d", r.icmp[0], r.icmp[1])
	}
}

var errNotReply = errors.New("not a probe reply")

// decoder turns raw packets into replies. It holds nothing; one per
// receiving goroutine all the same.
type decoder struct{}

// ipv4Header is the part of an IPv4 header the decoder needs.
type ipv4Header struct {
	proto    uint8
	fragOff  uint16 // fragment offset, in 8-byte units
	moreFrag bool   // the more-fragments flag
	src, dst netip.Addr
	payload  []byte
}

// decodeIPv4 reads an IPv4 header as gopacket's layers.IPv4 does: the
// total length cuts trailing bytes off, a total length of 0 (segmentation
// offload) means the whole packet.
func decodeIPv4(pkt []byte) (ipv4Header, error) {
	if len(pkt) < ipv4HeaderLen {
		return ipv4Header{}, fmt.Errorf("decode ipv4: %d bytes, too short", len(pkt))
	}
	if pkt[0]>>4 != 4 {
		return ipv4Header{}, fmt.Errorf("decode ipv4: version %d", pkt[0]>>4)
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	if total == 0 {
		total = len(pkt)
	}
	switch {
	case ihl < ipv4HeaderLen:
		return ipv4Header{}, fmt.Errorf("decode ipv4: header length %d", ihl)
	case total < ihl:
		return ipv4Header{}, fmt.Errorf("decode ipv4: total length %d below header length %d", total, ihl)
	case ihl > len(pkt):
		return ipv4Header{}, errors.New("decode ipv4: not all header bytes available")
	}
	if total < len(pkt) {
		pkt = pkt[:total]
	}
	frag := binary.BigEndian.Uint16(pkt[6:8])
	return ipv4Header{
		proto:    pkt[9],
		fragOff:  frag & 0x1fff,
		moreFrag: frag&0x2000 != 0,
		src:      netip.AddrFrom4([4]byte(pkt[12:16])),
		dst:      netip.AddrFrom4([4]byte(pkt[16:20])),
		payload:  pkt[ihl:],
	}, nil
}

// tcp4 decodes what an ip4:tcp raw socket delivers: the IPv4 header and the
// TCP segment.
func (d *decoder) tcp4(pkt []byte) (reply, error) {
	ip, err := decodeIPv4(pkt)
	if err != nil {
		return reply{}, err
	}
	if ip.proto != protoTCP || ip.fragOff != 0 || ip.moreFrag {
		return reply{}, errNotReply
	}
	return d.tcpSeg(ip.payload, ip.dst, ip.src)
}

// tcp6 decodes what an ip6:tcp raw socket delivers: the TCP segment only;
// the addresses come from recvmsg.
func (d *decoder) tcp6(seg []byte, local, remote netip.Addr) (reply, error) {
	return d.tcpSeg(seg, local, remote)
}

// TCP flags.
const (
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

func (d *decoder) tcpSeg(seg []byte, local, remote netip.Addr) (reply, error) {
	if len(seg) < 20 {
		return reply{}, fmt.Errorf("decode tcp: %d bytes, too short", len(seg))
	}
	if off := int(seg[12]>>4) * 4; off < 20 || off > len(seg) {
		return reply{}, fmt.Errorf("decode tcp: data offset %d of %d bytes", off, len(seg))
	}
	r := reply{
		local: local, remote: remote,
		localPort: binary.BigEndian.Uint16(seg[2:4]), remotePort: binary.BigEndian.Uint16(seg[0:2]),
		ack: binary.BigEndian.Uint32(seg[8:12]),
	}
	switch f := seg[13]; {
	case f&tcpSYN != 0 && f&tcpACK != 0 && f&tcpRST == 0:
		r.kind = replySynAck
	case f&tcpRST != 0 && f&tcpACK != 0:
		r.kind = replyRST
	default:
		return reply{}, errNotReply
	}
	return r, nil
}

// quoted decodes the start of the probe an ICMP error quotes: IPv4 header
// or IPv6 header, then at least 8 bytes of TCP (ports and sequence number).
func (d *decoder) quoted(r *reply, inner []byte, v6 bool) error {
	var src, dst netip.Addr
	var l4 []byte
	if v6 {
		if len(inner) < 40+8 || inner[0]>>4 != 6 || inner[6] != protoTCP {
			return errNotReply
		}
		src = netip.AddrFrom16([16]byte(inner[8:24]))
		dst = netip.AddrFrom16([16]byte(inner[24:40]))
		l4 = inner[40:]
	} else {
		if len(inner) < 20 || inner[0]>>4 != 4 {
			return errNotReply
		}
		ihl := int(inner[0]&0x0f) * 4
		if ihl < 20 || len(inner) < ihl+8 || inner[9] != protoTCP {
			return errNotReply
		}
		src = netip.AddrFrom4([4]byte(inner[12:16]))
		dst = netip.AddrFrom4([4]byte(inner[16:20]))
		l4 = inner[ihl:]
	}
	r.kind = replyUnreach
	r.local, r.remote = src, dst
	r.localPort = binary.BigEndian.Uint16(l4[0:2])
	r.remotePort = binary.BigEndian.Uint16(l4[2:4])
	r.ack = binary.BigEndian.Uint32(l4[4:8])
	return nil
}

// icmp4Unreach decodes what an ip4:icmp raw socket delivers (IPv4 header
// included) when it is a destination-unreachable quoting a TCP probe.
func (d *decoder) icmp4Unreach(pkt []byte) (reply, error) {
	ip, err := decodeIPv4(pkt)
	if err != nil {
		return reply{}, err
	}
	if ip.proto != protoICMPv4 || ip.fragOff != 0 {
		return reply{}, errNotReply
	}
	m := ip.payload
	if len(m) < 8 {
		return reply{}, fmt.Errorf("decode icmpv4: %d bytes, too short", len(m))
	}
	if m[0] != icmp4Unreach {
		return reply{}, errNotReply
	}
	var r reply
	if err := d.quoted(&r, m[8:], false); err != nil {
		return reply{}, err
	}
	r.icmp = [2]uint8{m[0], m[1]}
	return r, nil
}

// icmp6Unreach decodes what an ip6:ipv6-icmp raw socket delivers (no IPv6
// header) when it is a destination-unreachable quoting a TCP probe.
func (d *decoder) icmp6Unreach(msg []byte) (reply, error) {
	if len(msg) < 4 {
		return reply{}, fmt.Errorf("decode icmpv6: %d bytes, too short", len(msg))
	}
	if msg[0] != icmp6Unreach {
		return reply{}, errNotReply
	}
	// Type, code and checksum, then 4 unused bytes before the quoted packet.
	if len(msg) < 8 {
		return reply{}, errNotReply
	}
	var r reply
	if err := d.quoted(&r, msg[8:], true); err != nil {
		return reply{}, err
	}
	r.icmp = [2]uint8{msg[0], msg[1]}
	return r, nil
}
