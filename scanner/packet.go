package scanner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// synWindow is the TCP window advertised in probes (nmap uses 1024 too).
const synWindow = 1024

// mssOption is the one option a probe carries: real stacks send it, and a
// bare SYN stands out to some middleboxes.
var mssOption = []byte{0x05, 0xb4} // 1460

// packetBuilder serialises SYN probes. It is not safe for concurrent use: the
// engine loop owns one.
type packetBuilder struct {
	buf gopacket.SerializeBuffer
	tcp layers.TCP
	ip4 layers.IPv4
	opt [1]layers.TCPOption
	// Address storage of ip4, so that building allocates nothing.
	src4, dst4 [4]byte
}

func newPacketBuilder() *packetBuilder {
	return &packetBuilder{buf: gopacket.NewSerializeBufferExpectedSize(ipv4HeaderLen, 24)}
}

// Header fields of an IPv4 probe, as the kernel would fill them for a raw
// TCP socket.
const (
	ipv4HeaderLen = 20
	probeTTL      = 64
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
	b.src4, b.dst4 = src.As4(), dst.As4()
	b.ip4 = layers.IPv4{
		Version:  4,
		IHL:      ipv4HeaderLen / 4,
		TTL:      probeTTL,
		Flags:    layers.IPv4DontFragment,
		Protocol: layers.IPProtocolTCP,
		SrcIP:    b.src4[:],
		DstIP:    b.dst4[:],
	}
	if err := b.serializeTCP(sport, dport, seq); err != nil {
		return out, err
	}
	// Prepended to the segment; FixLengths sets the total length.
	if err := b.ip4.SerializeTo(b.buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}); err != nil {
		return out, fmt.Errorf("build syn: %w", err)
	}
	start := len(out)
	out = append(out, b.buf.Bytes()...)
	seg := out[start+ipv4HeaderLen:]
	binary.BigEndian.PutUint16(seg[16:18], 0)
	binary.BigEndian.PutUint16(seg[16:18], tcpChecksum(src, dst, seg))
	return out, nil
}

// syn appends a SYN segment from src:sport to dst:dport with sequence number
// seq to out, its checksum computed over the IPv4 or IPv6 pseudo-header.
func (b *packetBuilder) syn(out []byte, src, dst netip.Addr, sport, dport uint16, seq uint32) ([]byte, error) {
	if err := b.serializeTCP(sport, dport, seq); err != nil {
		return out, err
	}
	seg := b.buf.Bytes()
	start := len(out)
	out = append(out, seg...)
	seg = out[start:]
	binary.BigEndian.PutUint16(seg[16:18], 0)
	binary.BigEndian.PutUint16(seg[16:18], tcpChecksum(src, dst, seg))
	return out, nil
}

// serializeTCP clears the buffer and serialises the SYN segment into it,
// checksum not yet computed.
func (b *packetBuilder) serializeTCP(sport, dport uint16, seq uint32) error {
	b.opt[0] = layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: mssOption}
	b.tcp = layers.TCP{
		SrcPort: layers.TCPPort(sport),
		DstPort: layers.TCPPort(dport),
		Seq:     seq,
		SYN:     true,
		Window:  synWindow,
		Options: b.opt[:],
	}
	if err := b.buf.Clear(); err != nil {
		return fmt.Errorf("build syn: %w", err)
	}
	if err := b.tcp.SerializeTo(b.buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		return fmt.Errorf("build syn: %w", err)
	}
	return nil
}

// tcpChecksum is the TCP checksum of seg (checksum field zeroed) over the
// pseudo-header of RFC 793 (IPv4) or RFC 8200 section 8.1 (IPv6).
func tcpChecksum(src, dst netip.Addr, seg []byte) uint16 {
	var sum uint32
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		sum += sum16(s[:]) + sum16(d[:])
		sum += uint32(layers.IPProtocolTCP) + uint32(len(seg))
	} else {
		s, d := src.As16(), dst.As16()
		sum += sum16(s[:]) + sum16(d[:])
		n := uint32(len(seg))
		sum += n>>16 + n&0xffff + uint32(layers.IPProtocolTCP)
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

// decoder turns raw packets into replies. It reuses its layers, so one
// decoder per receiving goroutine.
type decoder struct {
	ip4   layers.IPv4
	tcp   layers.TCP
	icmp4 layers.ICMPv4
	icmp6 layers.ICMPv6
}

// tcp4 decodes what an ip4:tcp raw socket delivers: the IPv4 header and the
// TCP segment.
func (d *decoder) tcp4(pkt []byte) (reply, error) {
	if err := d.ip4.DecodeFromBytes(pkt, gopacket.NilDecodeFeedback); err != nil {
		return reply{}, fmt.Errorf("decode ipv4: %w", err)
	}
	if d.ip4.Protocol != layers.IPProtocolTCP || d.ip4.FragOffset != 0 || d.ip4.Flags&layers.IPv4MoreFragments != 0 {
		return reply{}, errNotReply
	}
	local, ok1 := netip.AddrFromSlice(d.ip4.DstIP)
	remote, ok2 := netip.AddrFromSlice(d.ip4.SrcIP)
	if !ok1 || !ok2 {
		return reply{}, errNotReply
	}
	return d.tcpSeg(d.ip4.Payload, local.Unmap(), remote.Unmap())
}

// tcp6 decodes what an ip6:tcp raw socket delivers: the TCP segment only;
// the addresses come from recvmsg.
func (d *decoder) tcp6(seg []byte, local, remote netip.Addr) (reply, error) {
	return d.tcpSeg(seg, local, remote)
}

func (d *decoder) tcpSeg(seg []byte, local, remote netip.Addr) (reply, error) {
	if err := d.tcp.DecodeFromBytes(seg, gopacket.NilDecodeFeedback); err != nil {
		return reply{}, fmt.Errorf("decode tcp: %w", err)
	}
	r := reply{
		local: local, remote: remote,
		localPort: uint16(d.tcp.DstPort), remotePort: uint16(d.tcp.SrcPort),
		ack: d.tcp.Ack,
	}
	switch {
	case d.tcp.SYN && d.tcp.ACK && !d.tcp.RST:
		r.kind = replySynAck
	case d.tcp.RST && d.tcp.ACK:
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
		if len(inner) < 40+8 || inner[0]>>4 != 6 || layers.IPProtocol(inner[6]) != layers.IPProtocolTCP {
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
		if ihl < 20 || len(inner) < ihl+8 || layers.IPProtocol(inner[9]) != layers.IPProtocolTCP {
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
	if err := d.ip4.DecodeFromBytes(pkt, gopacket.NilDecodeFeedback); err != nil {
		return reply{}, fmt.Errorf("decode ipv4: %w", err)
	}
	if d.ip4.Protocol != layers.IPProtocolICMPv4 || d.ip4.FragOffset != 0 {
		return reply{}, errNotReply
	}
	if err := d.icmp4.DecodeFromBytes(d.ip4.Payload, gopacket.NilDecodeFeedback); err != nil {
		return reply{}, fmt.Errorf("decode icmpv4: %w", err)
	}
	if d.icmp4.TypeCode.Type() != layers.ICMPv4TypeDestinationUnreachable {
		return reply{}, errNotReply
	}
	var r reply
	if err := d.quoted(&r, d.icmp4.Payload, false); err != nil {
		return reply{}, err
	}
	r.icmp = [2]uint8{d.icmp4.TypeCode.Type(), d.icmp4.TypeCode.Code()}
	return r, nil
}

// icmp6Unreach decodes what an ip6:ipv6-icmp raw socket delivers (no IPv6
// header) when it is a destination-unreachable quoting a TCP probe.
func (d *decoder) icmp6Unreach(msg []byte) (reply, error) {
	if err := d.icmp6.DecodeFromBytes(msg, gopacket.NilDecodeFeedback); err != nil {
		return reply{}, fmt.Errorf("decode icmpv6: %w", err)
	}
	if d.icmp6.TypeCode.Type() != layers.ICMPv6TypeDestinationUnreachable {
		return reply{}, errNotReply
	}
	// The ICMPv6 payload starts with 4 unused bytes before the quoted packet.
	p := d.icmp6.Payload
	if len(p) < 4 {
		return reply{}, errNotReply
	}
	var r reply
	if err := d.quoted(&r, p[4:], true); err != nil {
		return reply{}, err
	}
	r.icmp = [2]uint8{d.icmp6.TypeCode.Type(), d.icmp6.TypeCode.Code()}
	return r, nil
}
