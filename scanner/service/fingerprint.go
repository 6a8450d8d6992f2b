package service

import (
	"fmt"
	"strings"

	"github.com/exposure-monitor/exposure/internal/textsafe"
)

// maxFingerprint bounds the reply bytes kept for a service nothing named.
const maxFingerprint = 256

// fingerprint keeps the first bytes of one reply of a phase, so that a port
// reported as unknown still shows what answered on it (as nmap's service
// fingerprint does). It prefers the reply that came earliest in the plan:
// the NULL probe's banner when there is one.
type fingerprint struct {
	idx   int
	probe string
	data  []byte
}

// see records o's reply if it is the best so far. probes is the phase's
// plan, which o.idx indexes.
func (f *fingerprint) see(o outcome, probes []*Probe) {
	if len(o.data) == 0 || o.idx < 0 || o.idx >= len(probes) {
		return
	}
	if f.data != nil && f.idx <= o.idx {
		return
	}
	f.idx, f.probe = o.idx, probes[o.idx].Name
	f.data = append([]byte(nil), o.data[:min(len(o.data), maxFingerprint)]...)
}

// String renders the kept reply as "PROBE:BYTES", printable ASCII as it is
// and everything else escaped the way the probe file writes bytes (\r, \n,
// \t, \0, \xHH), or "" when no probe got a reply. The result is safe for
// logs and terminals; it is cut at maxFingerprint bytes of the reply.
func (f *fingerprint) String() string {
	if f.data == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString(f.probe)
	b.WriteByte(':')
	for _, c := range f.data {
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == 0:
			b.WriteString(`\0`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	// Escaped, the text holds no control characters; Clean bounds it and
	// keeps the rule that network text passes through textsafe.
	return textsafe.Clean(b.String(), len(f.probe)+1+4*maxFingerprint)
}
