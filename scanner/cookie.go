package scanner

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/dchest/siphash"
)

// cookieKey is the secret SipHash key of one engine. Replies are accepted
// only when they prove knowledge of the cookie it produced for the probe's
// 4-tuple, so off-path packets cannot invent open ports.
type cookieKey struct{ k0, k1 uint64 }

func newCookieKey() (cookieKey, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return cookieKey{}, fmt.Errorf("cookie key: %w", err)
	}
	return cookieKey{binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])}, nil
}

// cookie is the sequence number of the probe local:lport -> remote:rport.
func (k cookieKey) cookie(local, remote netip.Addr, lport, rport uint16) uint32 {
	var m [36]byte
	l, r := local.Unmap().As16(), remote.Unmap().As16()
	copy(m[0:16], l[:])
	copy(m[16:32], r[:])
	binary.BigEndian.PutUint16(m[32:], lport)
	binary.BigEndian.PutUint16(m[34:], rport)
	return uint32(siphash.Hash(k.k0, k.k1, m[:]))
}

// valid reports whether r answers a probe of this key sent from port lport:
// SYN-ACK and RST must acknowledge cookie+1, an ICMP error must quote the
// cookie itself.
func (k cookieKey) valid(r reply, lport uint16) bool {
	if r.localPort != lport {
		return false
	}
	c := k.cookie(r.local, r.remote, r.localPort, r.remotePort)
	if r.kind == replyUnreach {
		return r.ack == c
	}
	return r.ack == c+1
}
