package service

import "bytes"

// EchoService names a port whose reply to a probe is that probe's own
// bytes: an echo service (RFC 862) or anything else that mirrors its input.
// Such a reply says nothing about the protocol of the probe, so it is never
// matched against that probe's patterns: an XMPP stream header or an AMQP
// protocol header sent back to us is not an XMPP or AMQP server.
const EchoService = "echo"

// minEchoPrefix is how long a reply must be before a reply that is only the
// start of the payload counts as a partial echo: a one-byte "\0" is a
// genuine answer in some protocols (rlogin) whose probe starts with NUL.
const minEchoPrefix = 2

// echoes reports whether resp repeats payload: it starts with the whole
// payload, or it is a not yet complete start of it.
func echoes(payload, resp []byte) bool {
	if len(payload) == 0 || len(resp) == 0 {
		return false
	}
	if bytes.HasPrefix(resp, payload) {
		return true
	}
	return len(resp) >= minEchoPrefix && bytes.HasPrefix(payload, resp)
}

// matchReply is match behind the echo guard: a reply that repeats p's
// payload is a softmatch for EchoService, whatever p's patterns would say.
// No probe has a hard match for EchoService, so the phase stops the probes
// still running and names the port echo, unless a hard match (a banner
// that arrived first) already named it.
func (d *Detector) matchReply(p *Probe, resp []byte) (Fields, bool, bool) {
	if echoes(p.Payload, resp) {
		return Fields{Service: EchoService}, false, true
	}
	return d.match(p, resp)
}
