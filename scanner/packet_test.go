package scanner

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"
)

// gopacketChecksum is the TCP checksum gopacket itself computes for seg.
func gopacketChecksum(t *testing.T, src, dst netip.Addr, seg []byte) uint16 {
	t.Helper()
	var tcp layers.TCP
	require.NoError(t, tcp.DecodeFromBytes(seg, gopacket.NilDecodeFeedback))
	var nl gopacket.NetworkLayer
	if src.Is4() {
		nl = &layers.IPv4{Version: 4, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice()), Protocol: layers.IPProtocolTCP}
	} else {
		nl = &layers.IPv6{Version: 6, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice()), NextHeader: layers.IPProtocolTCP}
	}
	require.NoError(t, tcp.SetNetworkLayerForChecksum(nl))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, &tcp, gopacket.Payload(tcp.Payload)))
	return binary.BigEndian.Uint16(buf.Bytes()[16:18])
}

func TestSYNPacket(t *testing.T) {
	tests := []struct {
		name     string
		src, dst string
		sport    uint16
		dport    uint16
		seq      uint32
	}{
		{"v4", "198.18.0.1", "198.18.0.2", 61234, 22, 0xdeadbeef},
		{"v4 loopback", "127.0.0.1", "127.0.0.1", 65000, 65535, 0},
		{"v4 odd", "10.255.255.254", "192.0.2.77", 1, 1, 0xffffffff},
		{"v6", "2001:2::1", "2001:2::2", 61234, 443, 12345},
		{"v6 loopback", "::1", "::1", 64000, 8080, 0x80000000},
	}
	b := newPacketBuilder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := netip.MustParseAddr(tt.src), netip.MustParseAddr(tt.dst)
			prefix := []byte{1, 2, 3}
			out, err := b.syn(prefix, src, dst, tt.sport, tt.dport, tt.seq)
			require.NoError(t, err)
			require.Equal(t, []byte{1, 2, 3}, out[:3], "appends, keeps what was there")
			seg := out[3:]
			require.Len(t, seg, 24, "20-byte header + MSS option")

			var tcp layers.TCP
			require.NoError(t, tcp.DecodeFromBytes(seg, gopacket.NilDecodeFeedback))
			require.True(t, tcp.SYN)
			require.False(t, tcp.ACK || tcp.RST || tcp.FIN)
			require.Equal(t, layers.TCPPort(tt.sport), tcp.SrcPort)
			require.Equal(t, layers.TCPPort(tt.dport), tcp.DstPort)
			require.Equal(t, tt.seq, tcp.Seq)
			require.Equal(t, uint16(synWindow), tcp.Window)
			require.Equal(t, layers.TCPOptionKind(layers.TCPOptionKindMSS), tcp.Options[0].OptionType)

			require.Equal(t, gopacketChecksum(t, src, dst, seg), binary.BigEndian.Uint16(seg[16:18]))
			// A checksum over the pseudo-header verifies to zero.
			require.Equal(t, uint16(0), tcpChecksum(src, dst, seg))
			// The pseudo-header matters: another destination gives another sum.
			other := dst.Next()
			require.NotEqual(t, gopacketChecksum(t, src, other, seg), binary.BigEndian.Uint16(seg[16:18]))
		})
	}
}

func TestSYN4Packet(t *testing.T) {
	tests := []struct {
		name     string
		src, dst string
		sport    uint16
		dport    uint16
		seq      uint32
		wantErr  bool
	}{
		{"lab", "198.18.0.1", "198.18.0.2", 61234, 22, 0xdeadbeef, false},
		{"loopback", "127.0.0.1", "127.0.0.1", 65000, 65535, 0, false},
		{"odd", "10.255.255.254", "192.0.2.77", 1, 1, 0xffffffff, false},
		{"v6 source", "2001:2::1", "198.18.0.2", 1, 1, 1, true},
		{"v6 destination", "198.18.0.1", "2001:2::2", 1, 1, 1, true},
	}
	b := newPacketBuilder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, dst := netip.MustParseAddr(tt.src), netip.MustParseAddr(tt.dst)
			prefix := []byte{1, 2, 3}
			out, err := b.syn4(prefix, src, dst, tt.sport, tt.dport, tt.seq)
			if tt.wantErr {
				require.Error(t, err)
				require.Equal(t, prefix, out)
				return
			}
			require.NoError(t, err)
			require.Equal(t, []byte{1, 2, 3}, out[:3], "appends, keeps what was there")
			pkt := out[3:]
			require.Len(t, pkt, 20+24, "IPv4 header + TCP header with MSS option")

			var ip layers.IPv4
			require.NoError(t, ip.DecodeFromBytes(pkt, gopacket.NilDecodeFeedback))
			require.Equal(t, uint8(4), ip.Version)
			require.Equal(t, uint8(5), ip.IHL)
			require.Equal(t, uint16(len(pkt)), ip.Length)
			require.Equal(t, layers.IPProtocolTCP, ip.Protocol)
			require.Equal(t, uint8(probeTTL), ip.TTL)
			require.Equal(t, layers.IPv4DontFragment, ip.Flags)
			require.Equal(t, src.AsSlice(), []byte(ip.SrcIP.To4()))
			require.Equal(t, dst.AsSlice(), []byte(ip.DstIP.To4()))
			// A header checksum over the header verifies to zero.
			require.Equal(t, uint16(0xffff), uint16(sum16Fold(pkt[:20])))

			// The segment is exactly what syn builds for the same probe.
			seg, err := newPacketBuilder().syn(nil, src, dst, tt.sport, tt.dport, tt.seq)
			require.NoError(t, err)
			require.Equal(t, seg, pkt[20:])
			require.Equal(t, uint16(0), tcpChecksum(src, dst, pkt[20:]))

			// The decoder reads it as what it is: a SYN, not a reply.
			var d decoder
			_, err = d.tcp4(pkt)
			require.ErrorIs(t, err, errNotReply)
		})
	}
}

// sum16Fold is the one's complement sum of b, folded to 16 bits.
func sum16Fold(b []byte) uint32 {
	s := sum16(b)
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return s
}

// serializeReply builds a reply packet as the remote stack would send it.
func serializeReply(t testing.TB, remote, local netip.Addr, rport, lport uint16, ack uint32, synack bool) []byte {
	t.Helper()
	tcp := &layers.TCP{SrcPort: layers.TCPPort(rport), DstPort: layers.TCPPort(lport), Ack: ack, ACK: true, Window: 65535}
	if synack {
		tcp.SYN, tcp.Seq = true, 777
	} else {
		tcp.RST = true
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}
	if remote.Is4() {
		ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: remote.AsSlice(), DstIP: local.AsSlice(), Protocol: layers.IPProtocolTCP}
		require.NoError(t, tcp.SetNetworkLayerForChecksum(ip))
		require.NoError(t, gopacket.SerializeLayers(buf, opts, ip, tcp))
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: remote.AsSlice(), DstIP: local.AsSlice(), NextHeader: layers.IPProtocolTCP}
		require.NoError(t, tcp.SetNetworkLayerForChecksum(ip))
		require.NoError(t, gopacket.SerializeLayers(buf, opts, tcp))
	}
	return append([]byte(nil), buf.Bytes()...)
}

// serializeUnreach builds an ICMP destination unreachable quoting probe.
func serializeUnreach(t testing.TB, router, local netip.Addr, probe []byte, code uint8) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}
	if router.Is4() {
		ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: router.AsSlice(), DstIP: local.AsSlice(), Protocol: layers.IPProtocolICMPv4}
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, code)}
		require.NoError(t, gopacket.SerializeLayers(buf, opts, ip, icmp, gopacket.Payload(probe)))
	} else {
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeDestinationUnreachable, code)}
		require.NoError(t, icmp.SetNetworkLayerForChecksum(&layers.IPv6{SrcIP: router.AsSlice(), DstIP: local.AsSlice(), NextHeader: layers.IPProtocolICMPv6}))
		require.NoError(t, gopacket.SerializeLayers(buf, opts, icmp, gopacket.Payload(append([]byte{0, 0, 0, 0}, probe...))))
	}
	return append([]byte(nil), buf.Bytes()...)
}

// probeIP is a whole probe (IP header + SYN) as an ICMP error quotes it.
func probeIP(t testing.TB, b *packetBuilder, local, remote netip.Addr, lport, rport uint16, seq uint32) []byte {
	t.Helper()
	seg, err := b.syn(nil, local, remote, lport, rport, seq)
	require.NoError(t, err)
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if local.Is4() {
		ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: local.AsSlice(), DstIP: remote.AsSlice(), Protocol: layers.IPProtocolTCP}
		require.NoError(t, gopacket.SerializeLayers(buf, opts, ip, gopacket.Payload(seg)))
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: local.AsSlice(), DstIP: remote.AsSlice(), NextHeader: layers.IPProtocolTCP}
		require.NoError(t, gopacket.SerializeLayers(buf, opts, ip, gopacket.Payload(seg)))
	}
	return append([]byte(nil), buf.Bytes()...)
}

func TestDecodeReplies(t *testing.T) {
	key := cookieKey{1, 2}
	const lport = 61000
	b := newPacketBuilder()
	for _, fam := range []struct{ local, remote, router string }{
		{"198.18.0.1", "198.18.0.2", "198.18.0.254"},
		{"2001:2::1", "2001:2::2", "2001:2::fe"},
	} {
		local, remote, router := netip.MustParseAddr(fam.local), netip.MustParseAddr(fam.remote), netip.MustParseAddr(fam.router)
		v6 := local.Is6()
		c := key.cookie(local, remote, lport, 443)
		decodeTCP := func(d *decoder, pkt []byte) (reply, error) {
			if v6 {
				return d.tcp6(pkt, local, remote)
			}
			return d.tcp4(pkt)
		}
		decodeICMP := func(d *decoder, pkt []byte) (reply, error) {
			if v6 {
				return d.icmp6Unreach(pkt)
			}
			return d.icmp4Unreach(pkt)
		}
		tests := []struct {
			name   string
			pkt    []byte
			icmp   bool
			kind   replyKind
			valid  bool
			reason string
		}{
			{"syn-ack", serializeReply(t, remote, local, 443, lport, c+1, true), false, replySynAck, true, "syn-ack"},
			{"rst", serializeReply(t, remote, local, 443, lport, c+1, false), false, replyRST, true, "reset"},
			{"syn-ack wrong ack", serializeReply(t, remote, local, 443, lport, c, true), false, replySynAck, false, "syn-ack"},
			{"rst wrong port", serializeReply(t, remote, local, 444, lport, c+1, false), false, replyRST, false, "reset"},
			{"syn-ack to other source port", serializeReply(t, remote, local, 443, lport+1, c+1, true), false, replySynAck, false, "syn-ack"},
			{"unreachable", serializeUnreach(t, router, local, probeIP(t, b, local, remote, lport, 443, c), 13), true, replyUnreach, true, ""},
			{"unreachable forged seq", serializeUnreach(t, router, local, probeIP(t, b, local, remote, lport, 443, c+1), 13), true, replyUnreach, false, ""},
		}
		for _, tt := range tests {
			t.Run(fam.local+"/"+tt.name, func(t *testing.T) {
				var d decoder
				var r reply
				var err error
				if tt.icmp {
					r, err = decodeICMP(&d, tt.pkt)
				} else {
					r, err = decodeTCP(&d, tt.pkt)
				}
				require.NoError(t, err)
				require.Equal(t, tt.kind, r.kind)
				require.Equal(t, local, r.local)
				require.Equal(t, remote, r.remote)
				require.Equal(t, tt.valid, key.valid(r, lport))
				if tt.reason != "" {
					require.Equal(t, tt.reason, r.reason())
				} else {
					require.Contains(t, r.reason(), "code 13")
				}
			})
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	local, remote := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	b := newPacketBuilder()
	syn, err := b.syn(nil, local, remote, 1000, 80, 5)
	require.NoError(t, err)
	synIP := probeIP(t, b, remote, local, 80, 1000, 5) // a SYN *to* us: not a reply
	tests := []struct {
		name string
		pkt  []byte
	}{
		{"empty", nil},
		{"short", []byte{0x45, 0, 0}},
		{"syn, no ack", synIP},
		{"tcp without ip", syn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d decoder
			_, err := d.tcp4(tt.pkt)
			require.Error(t, err)
			_, err = d.icmp4Unreach(tt.pkt)
			require.Error(t, err)
		})
	}
	var d decoder
	_, err = d.tcp6(syn, remote, local)
	require.ErrorIs(t, err, errNotReply, "a bare SYN is no reply")
}

// FuzzDecode feeds hostile bytes to every decoder: none may panic, and a
// reply that passes the cookie check must really carry the cookie.
func FuzzDecode(f *testing.F) {
	local, remote := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	key := cookieKey{3, 4}
	c := key.cookie(local, remote, 61000, 22)
	f.Add(serializeReply(f, remote, local, 22, 61000, c+1, true))
	f.Add(serializeReply(f, remote, local, 22, 61000, c+1, false))
	b := newPacketBuilder()
	f.Add(serializeUnreach(f, remote, local, probeIP(f, b, local, remote, 61000, 22, c), 3))
	f.Add(serializeUnreach(f, netip.MustParseAddr("2001:2::2"), netip.MustParseAddr("2001:2::1"),
		probeIP(f, b, netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::2"), 61000, 22, 9), 1))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var d decoder
		check := func(r reply, err error) {
			if err != nil || !key.valid(r, 61000) {
				return
			}
			want := key.cookie(r.local, r.remote, r.localPort, r.remotePort)
			if r.kind != replyUnreach {
				want++
			}
			if r.ack != want || r.localPort != 61000 {
				t.Fatalf("accepted a reply without the cookie: %+v", r)
			}
		}
		check(d.tcp4(pkt))
		check(d.tcp6(pkt, local, remote))
		check(d.icmp4Unreach(pkt))
		check(d.icmp6Unreach(pkt))
	})
}
