package service

import (
	"context"
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/exposure-monitor/exposure/internal/textsafe"
	"github.com/exposure-monitor/exposure/snapshot"
)

// Outcome indexes that are not probes: the TLS handshake probe, and the
// note that every probe has been launched.
const (
	tlsIdx      = -1
	launchedIdx = -2
)

type dialFunc func(ctx context.Context) (net.Conn, error)

// outcome is what one probe connection learned.
type outcome struct {
	idx        int
	fields     Fields
	hard, soft bool
	tcpwrapped bool
	tls        bool
	cert       *x509.Certificate
	data       []byte
	dialErr    error
	// tlsSlow: the TLS handshake probe ran out of time (a silent plain
	// service, or a TLS server too slow to answer in time).
	tlsSlow bool
}

// phaseResult is the verdict of one detection phase.
type phaseResult struct {
	fields     Fields
	found      bool
	tcpwrapped bool
	tls        bool
	cert       *x509.Certificate
	// unreachable is set when no probe could connect at all.
	unreachable error
	// cut is set when the phase ended on a timeout while a probe that
	// could have told more was outstanding.
	cut bool
	// fingerprint is what answered when nothing matched (fingerprint.go).
	fingerprint string
	// check is the cheap fingerprint of a complete hard match (reuse.go).
	check Check
}

func (r phaseResult) service() *snapshot.Service {
	s := &snapshot.Service{Name: "unknown", CPE: []string{}, Incomplete: r.cut}
	switch {
	case r.found:
		s.Name = textsafe.Clean(r.fields.Service, maxProductLen)
		s.Product = textsafe.Clean(r.fields.Product, maxProductLen)
		s.Version = textsafe.Clean(r.fields.Version, maxProductLen)
		s.Info = textsafe.Clean(r.fields.Info, maxInfoLen)
		for _, c := range r.fields.CPE {
			if c = textsafe.Clean(c, maxInfoLen); c != "" && !slices.Contains(s.CPE, c) {
				s.CPE = append(s.CPE, c)
			}
		}
	case r.tcpwrapped:
		s.Name = "tcpwrapped"
	default:
		s.Fingerprint = r.fingerprint
	}
	return s
}

// plan orders the probes for a port: NULL, then the probes registered for
// the port (as nmap), then the rest up to the intensity by rarity, in file
// order within a rarity.
func (d *Detector) plan(port uint16, inTLS bool) []*Probe {
	var first, rest []*Probe
	var null *Probe
	for _, p := range d.db.Probes {
		if p.Protocol != "TCP" {
			continue
		}
		forPort := p.Ports.Contains(port) || inTLS && p.SSLPorts.Contains(port)
		switch {
		case p.Name == "NULL":
			null = p
		case forPort:
			first = append(first, p)
		case p.Rarity <= d.o.Intensity:
			rest = append(rest, p)
		}
	}
	// Common probes first: with a few connections at a time, a service that
	// ignores what it does not understand should meet its probe early.
	slices.SortStableFunc(rest, func(a, b *Probe) int { return a.Rarity - b.Rarity })
	return append(append([]*Probe{null}, first...), rest...)
}

// plainFirst is how long the TLS handshake probe waits on a port that
// belongs to a plain-text protocol (see tlsDelay).
const plainFirst = 300 * time.Millisecond

// tlsDelay is how long the TLS handshake probe of a plain phase waits
// before it starts: plainFirst on a port a probe is registered for in
// plain text (ports, never sslports), so that port's own probe answers
// first; at once elsewhere. Some single-threaded servers (cupsd without a
// usable certificate) stall every client for seconds on a ClientHello, and
// the handshake sent alongside the plain probes would stall the answer
// that names them.
func (d *Detector) tlsDelay(port uint16, inTLS bool) time.Duration {
	if inTLS {
		return 0
	}
	plain := false
	for _, p := range d.db.Probes {
		if p.Protocol != "TCP" || p.IsNull() {
			continue
		}
		if p.SSLPorts.Contains(port) {
			return 0
		}
		plain = plain || p.Ports.Contains(port)
	}
	if plain {
		return plainFirst
	}
	return 0
}

// canMatch reports whether p (or its fallbacks) has a hard match for
// service. The NULL probe as a fallback does not count: through it a probe
// can only see the banner again, which the NULL probe itself has matched.
func (p *Probe) canMatch(service string) bool {
	for _, q := range append([]*Probe{p}, p.fallbacks...) {
		if q.IsNull() && q != p {
			continue
		}
		for _, m := range q.Matches {
			if !m.Soft && m.Service == service {
				return true
			}
		}
	}
	return false
}

// detectPhase sends the planned probes, each on its own connection, up to
// perPort at once, the NULL probe among the first, so a silent service does
// not cost a banner wait and a banner service does not wait for the rest.
// A hard match ends the phase (see phase.held for the two short waits); a
// softmatch narrows the probes still to be sent to those that can name that
// service, and is the verdict when no hard match follows.
func (d *Detector) detectPhase(ctx context.Context, dial dialFunc, port uint16, inTLS bool) phaseResult {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	probes := d.plan(port, inTLS)
	deadline, _ := ctx.Deadline()
	p := &phase{
		d: d, dial: dial, inTLS: inTLS, ctx: ctx, cancel: cancel, start: start, deadline: deadline,
		probes:     probes,
		results:    make(chan outcome, len(probes)+1),
		done:       make(chan struct{}),
		pending:    map[int]*Probe{},
		cancels:    map[int]context.CancelFunc{},
		tlsPending: !inTLS,
		tlsDelay:   d.tlsDelay(port, inTLS),
	}
	launched := p.launch()
	return p.collect(launched)
}

// phase is one detection pass over a port, plain or inside TLS; it lives
// for one call of detectPhase. The launcher (launch) and the collecting
// loop (collect) share the probe bookkeeping under mu; the verdict state
// belongs to the collecting loop alone.
type phase struct {
	d     *Detector
	dial  dialFunc
	inTLS bool
	// tlsDelay holds the TLS handshake probe back (see Detector.tlsDelay).
	tlsDelay time.Duration
	// ctx carries the phase's timeout, which ends at deadline; cancel
	// stops every probe.
	ctx      context.Context
	cancel   context.CancelFunc
	start    time.Time
	deadline time.Time
	probes   []*Probe
	results  chan outcome
	// wg counts the launcher and every probe; done closes when all ended.
	wg   sync.WaitGroup
	done chan struct{}

	mu sync.Mutex
	// softName is the service of the first softmatch: probes that cannot
	// name it are not sent.
	softName string
	pending  map[int]*Probe // launched, no outcome yet
	cancels  map[int]context.CancelFunc
	next     int // probes[next:] are not launched yet

	// held is the best hard match so far, not yet final while (a) it is
	// HTTP and the TLS handshake probe may still succeed, since HTTPS
	// servers answer plain HTTP in HTTP (nginx: "plain HTTP request was
	// sent to HTTPS port"), or (b) it has no version and a probe still
	// running could give one, within a grace period (the version wait).
	held *outcome
	// best is the softmatch that says most (softer), earliest first.
	best *outcome
	// fp keeps the first bytes that answered, for an unknown service.
	fp         fingerprint
	tlsPending bool
	tlsSlow    bool
	sawData    bool
	connected  bool
	dialErr    error
	// versionWait fires when the version wait is over.
	versionWait     <-chan time.Time
	versionWaitOver bool
}

// expired reports whether the phase's timeout has passed. Probes'
// connections carry the same deadline and may notice it before ctx does,
// so the clock decides, not ctx.Err.
func (p *phase) expired() bool {
	return p.ctx.Err() != nil || !time.Now().Before(p.deadline)
}

// launch starts the TLS handshake probe (outside TLS) and the planned
// probes, and returns a channel closed once every probe has been launched
// or skipped.
func (p *phase) launch() <-chan struct{} {
	launched := make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(launched)
		if !p.inTLS {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				if p.tlsDelay > 0 {
					select {
					case <-time.After(p.tlsDelay):
					case <-p.ctx.Done():
					}
				}
				p.results <- p.d.tlsProbe(p.ctx, p.dial)
			}()
		}
		p.launchProbes()
	}()
	go func() { p.wg.Wait(); close(p.done) }()
	return launched
}

// launchProbes starts the planned probes in order, at most perPort at once.
func (p *phase) launchProbes() {
	sem := make(chan struct{}, perPort)
	for i, probe := range p.probes {
		select {
		case sem <- struct{}{}:
		case <-p.ctx.Done():
			return
		}
		pctx, ok := p.register(i, probe)
		if !ok {
			<-sem
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer func() { <-sem }()
			p.results <- p.d.runProbe(pctx, p.dial, i, probe)
		}()
	}
}

// register records probe i as pending and returns its context, or false
// when the softmatch so far rules it out.
func (p *phase) register(i int, probe *Probe) (context.Context, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next = i + 1
	if p.softName != "" && !probe.canMatch(p.softName) {
		return nil, false
	}
	ctx, cancel := context.WithCancel(p.ctx)
	p.pending[i], p.cancels[i] = probe, cancel
	return ctx, true
}

// settle removes an ended probe from the bookkeeping.
func (p *phase) settle(idx int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.pending, idx)
	if c, ok := p.cancels[idx]; ok {
		c()
		delete(p.cancels, idx)
	}
}

// narrow stops the running probes that cannot give a hard match for the
// first softmatch's service, freeing their connections for the ones that
// can; register no longer sends such probes.
func (p *phase) narrow(service string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.softName != "" {
		return
	}
	p.softName = service
	for i, probe := range p.pending {
		if !probe.canMatch(service) {
			p.cancels[i]()
		}
	}
}

// mayMatch reports whether a probe running or still to be sent could give
// a hard match for service.
func (p *phase) mayMatch(service string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, probe := range p.pending {
		if probe.canMatch(service) {
			return true
		}
	}
	for _, probe := range p.probes[p.next:] {
		if probe.canMatch(service) {
			return true
		}
	}
	return false
}

// collect takes the probes' outcomes until one gives the verdict, the
// version wait ends with a final one, or every probe has ended.
func (p *phase) collect(launched <-chan struct{}) phaseResult {
	for {
		select {
		case o := <-p.results:
			p.settle(o.idx)
			if r, ok := p.take(o); ok {
				return p.finish(r)
			}
		case <-p.versionWait:
			p.versionWait = nil
			p.versionWaitOver = true
			if p.ready() {
				return p.finish(p.heldResult())
			}
		case <-launched:
			launched = nil
			if r, ok := p.take(outcome{idx: launchedIdx}); ok {
				return p.finish(r)
			}
		case <-p.done:
			return p.ended()
		}
	}
}

// finish stops the probes still running and waits for them.
func (p *phase) finish(r phaseResult) phaseResult {
	p.cancel()
	<-p.done
	return r
}

// take records one outcome and returns the phase's verdict when it is
// final.
func (p *phase) take(o outcome) (phaseResult, bool) {
	p.sawData = p.sawData || len(o.data) > 0
	p.fp.see(o, p.probes)
	if o.dialErr != nil {
		p.dialErr = o.dialErr
	} else if o.idx >= 0 {
		p.connected = true
	}
	switch {
	case o.tls:
		return phaseResult{tls: true, cert: o.cert}, true
	case o.idx == tlsIdx:
		p.tlsPending, p.tlsSlow = false, o.tlsSlow
	case o.hard && o.fields.Service == "ssl" && !p.inTLS:
		// A file probe (an nmap-style TLS hello) named TLS; the
		// handshake probe confirms it and fetches the certificate.
	case o.hard:
		p.hold(o)
	case o.tcpwrapped && !p.sawData:
		return phaseResult{tcpwrapped: true}, true
	case o.soft:
		// o.tcpwrapped with data elsewhere: the service answered
		// another probe and merely drops idle connections.
		if p.best == nil || softer(*p.best, o) {
			p.best = &o
		}
		p.narrow(o.fields.Service)
	}
	if p.ready() {
		return p.heldResult(), true
	}
	if p.held == nil && p.best != nil && !p.tlsPending && !p.mayMatch(p.best.fields.Service) {
		return phaseResult{fields: p.best.fields, found: true, cut: p.expired()}, true
	}
	return phaseResult{}, false
}

// hold keeps a hard match as the verdict unless one that says more (a
// version, else a product) is held already, and starts the version wait:
// as long again as the phase has taken so far, at least 500 ms.
func (p *phase) hold(o outcome) {
	if p.held == nil || says(o.fields) > says(p.held.fields) {
		p.held = &o
	}
	if p.versionWait == nil {
		p.versionWait = time.After(max(500*time.Millisecond, time.Since(p.start)))
	}
}

// says ranks what a match tells: 2 with a version, 1 with a product only.
func says(f Fields) int {
	switch {
	case f.Version != "":
		return 2
	case f.Product != "":
		return 1
	}
	return 0
}

// softer reports whether softmatch b should replace a as the verdict: it
// says more (says, then an info), or as much from an earlier probe.
func softer(a, b outcome) bool {
	ra, rb := 2*says(a.fields), 2*says(b.fields)
	if a.fields.Info != "" {
		ra++
	}
	if b.fields.Info != "" {
		rb++
	}
	return rb > ra || rb == ra && b.idx < a.idx
}

// ready reports whether the held match is final.
func (p *phase) ready() bool {
	if p.held == nil {
		return false
	}
	if p.tlsPending && strings.HasPrefix(p.held.fields.Service, "http") {
		// HTTPS servers answer plain HTTP in HTTP; other protocols'
		// answers are not TLS, and a service that stalls a ClientHello
		// (redis, DNS) would hold the verdict 3 s.
		return false
	}
	if p.held.fields.Version != "" || p.versionWaitOver {
		return true
	}
	return !p.mayMatch(p.held.fields.Service)
}

// heldResult is the verdict held, cut when it has no version and the
// phase's timeout stopped the probes, or the version wait ended while a
// probe that could give the version was still running.
func (p *phase) heldResult() phaseResult {
	h := p.held.fields
	cut := h.Version == "" && (p.expired() || p.versionWaitOver && p.mayMatch(h.Service))
	r := phaseResult{fields: h, found: true, cut: cut}
	if !cut && p.held.idx >= 0 && p.held.idx < len(p.probes) {
		r.check = Check{Probe: p.probes[p.held.idx].Name, Sum: h.matched}
	}
	return r
}

// ended is the verdict once every probe has ended: it takes what they
// sent last, then settles for what is held.
func (p *phase) ended() phaseResult {
	for drained := false; !drained; {
		select {
		case o := <-p.results:
			if r, ok := p.take(o); ok {
				return r
			}
		default:
			drained = true
		}
	}
	// The phase's own timeout stopped the probes still running or not yet
	// sent: what they might have said is missing. A TLS handshake that
	// timed out where nothing else answered may be a TLS service too slow
	// to answer in time.
	cut := p.expired() || p.tlsSlow && p.held == nil && p.best == nil
	switch {
	case p.held != nil:
		return p.heldResult()
	case p.best != nil:
		return phaseResult{fields: p.best.fields, found: true, cut: cut}
	case !p.connected && p.dialErr != nil:
		return phaseResult{unreachable: p.dialErr}
	}
	return phaseResult{cut: cut, fingerprint: p.fp.String()}
}
