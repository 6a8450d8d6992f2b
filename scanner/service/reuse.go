package service

import (
	"context"
	"crypto/x509"
	"hash/fnv"
	"net/netip"
	"sync"

	"github.com/exposure-monitor/exposure/snapshot"
)

// AnnotateMissing is Annotate for the open TCP ports of s that have no
// Service yet: a port that already carries one is not probed. On a fresh
// sweep, where no port has a Service, it is Annotate.
func (d *Detector) AnnotateMissing(ctx context.Context, s *snapshot.Snapshot) {
	d.annotate(ctx, s, func(p *snapshot.Port) bool { return p.Service == nil })
}

// annotate runs TCP detection on the open ports of s that want accepts.
func (d *Detector) annotate(ctx context.Context, s *snapshot.Snapshot, want func(*snapshot.Port) bool) {
	d.eachOpenPort(ctx, s, "tcp", func(addr netip.Addr, p *snapshot.Port) {
		if want(p) {
			d.annotatePort(ctx, addr, p)
		}
	})
}

// Check is the cheap fingerprint of one TCP detection: the probe whose
// reply the service was matched on and a 64-bit hash of the pattern that
// matched and the service, product and version it captured from the reply
// (Match.sum), or, for a service found inside TLS, a hash of the leaf
// certificate. Re-checking it
// costs one connection and one probe (or one handshake), where a detection
// costs up to a dozen. A detection that was cut short, a softmatch, an
// unknown or tcpwrapped service has no Check (the zero value), so it is
// detected again every scan.
//
// The trade-off: a change behind an unchanged Check (the same certificate
// in front of a new server inside TLS, a server that hides its version
// from the probe that matched but shows it to another, a new page title
// or other info) is not seen by the Check; only the periodic full
// detection (the daemon's service_detection.refresh) finds it.
type Check struct {
	// Probe is the TCP probe whose reply matched; "" with TLS.
	Probe string
	TLS   bool
	Sum   uint64
}

// Valid reports whether c can be re-checked.
func (c Check) Valid() bool { return c.TLS || c.Probe != "" }

func tlsCheck(cert *x509.Certificate) Check {
	if cert == nil {
		return Check{}
	}
	return Check{TLS: true, Sum: sum64(cert.Raw)}
}

func sum64(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// Recheck reports whether the service on addr:port still gives Check c:
// one connection sending c's probe and matching its reply, or one TLS
// handshake, bounded by Options.Timeout. False for an invalid c, a probe
// the database no longer has, a reply that no longer matches or matches
// other bytes, and any failure to connect.
func (d *Detector) Recheck(ctx context.Context, addr netip.Addr, port uint16, c Check) bool {
	if !c.Valid() {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	plain := d.plainDial(netip.AddrPortFrom(addr, port).String())
	if c.TLS {
		o := d.tlsProbe(ctx, plain)
		return o.tls && tlsCheck(o.cert) == c
	}
	p := d.db.Probe("TCP", c.Probe)
	if p == nil {
		return false
	}
	o := d.runProbe(ctx, plain, 0, p)
	return o.hard && o.fields.matched == c.Sum
}

// Prior is what the previous detection of a port left: its service and
// Check.
type Prior struct {
	Service *snapshot.Service
	Check   Check
}

// Detected is the outcome of AnnotateIncremental on one port: Kept when
// the prior service passed its Check and was copied, otherwise a full
// detection ran and Check is its new one (zero when it has none).
type Detected struct {
	Address string
	Port    *snapshot.Port
	Check   Check
	Kept    bool
}

// AnnotateIncremental is AnnotateMissing with reuse: an open TCP port of s
// without a Service for which prior returns one whose Check still holds
// (Recheck) gets the prior service copied; every other port is detected
// in full. done receives every port's outcome (not the ports that fail or
// are excluded), one call at a time. prior is called concurrently.
func (d *Detector) AnnotateIncremental(ctx context.Context, s *snapshot.Snapshot, prior func(addr string, port uint16) (Prior, bool), done func(Detected)) {
	var mu sync.Mutex
	report := func(r Detected) {
		mu.Lock()
		defer mu.Unlock()
		done(r)
	}
	d.eachOpenPort(ctx, s, "tcp", func(addr netip.Addr, p *snapshot.Port) {
		if p.Service != nil {
			return
		}
		a := addr.String()
		if pr, ok := prior(a, p.Port); ok && pr.Service != nil && d.Recheck(ctx, addr, p.Port, pr.Check) {
			p.Service = pr.Service
			report(Detected{Address: a, Port: p, Check: pr.Check, Kept: true})
			return
		}
		if ctx.Err() != nil {
			return
		}
		svc, c, err := d.detect(ctx, addr, p.Port)
		if err != nil {
			d.logDetectErr(ctx, addr, p.Port, err)
			return
		}
		p.Service = svc
		report(Detected{Address: a, Port: p, Check: c})
	})
}
