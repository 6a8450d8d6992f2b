package service

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/exposure-monitor/exposure/internal/textsafe"
	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/snapshot"
)

//go:embed probes/exposure-service-probes
var embedded embed.FS

// EmbeddedFile is the name of the built-in probe file in parse errors and logs.
const EmbeddedFile = "probes/exposure-service-probes"

// Defaults and bounds.
const (
	DefaultIntensity   = 7
	DefaultTimeout     = 5 * time.Second
	DefaultConcurrency = 32
	// MatchTimeout bounds every regex run, so a hostile banner against a
	// backtracking pattern costs at most this much.
	MatchTimeout = 100 * time.Millisecond
	// maxResponse bounds what is read from one connection.
	maxResponse = 16 << 10
	// perPort is how many probe connections one port gets at once.
	perPort = 8
	// idleAfterData ends a read once a reply has started and then paused:
	// servers send their greeting or error in one go, and waiting the full
	// totalwaitms for a keep-alive connection to close costs seconds.
	idleAfterData = 400 * time.Millisecond
	// tlsHandshakeWait bounds the TLS detection handshake.
	tlsHandshakeWait = 3 * time.Second
	maxProductLen    = 80
	maxInfoLen       = 160
)

// ErrExcluded is returned by Detect for ports the probe files Exclude.
var ErrExcluded = errors.New("port excluded from service detection")

// Options configure a Detector.
type Options struct {
	// Intensity 0-9 as nmap's --version-intensity: probes whose rarity is
	// above it are not sent, except those registered for the port.
	// Callers wanting nmap's default pass DefaultIntensity (7).
	Intensity int
	// Timeout bounds the detection of one port (and again its repetition
	// inside TLS). Zero means DefaultTimeout.
	Timeout time.Duration
	// Concurrency bounds the ports Annotate detects at once. Zero means
	// DefaultConcurrency.
	Concurrency int
	// ProbeFiles are operator probe files in the nmap-service-probes
	// format, merged after the embedded one in this order.
	ProbeFiles []string
	Logger     *slog.Logger
	// Interface, if set, binds every connection (plain and TLS) to that
	// network interface (SO_BINDTODEVICE, like nmap's -e); a destination
	// not routed through it is not connected to. The interface may appear
	// after New; a detection while it is missing fails naming it.
	Interface string
}

func (o *Options) validate() error {
	if o.Intensity < 0 || o.Intensity > 9 {
		return fmt.Errorf("intensity %d: must be between 0 and 9", o.Intensity)
	}
	if o.Timeout < 0 {
		return fmt.Errorf("timeout %v: must not be negative", o.Timeout)
	}
	if o.Concurrency < 0 {
		return fmt.Errorf("concurrency %d: must not be negative", o.Concurrency)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Interface != "" {
		if err := netif.CheckName(o.Interface); err != nil {
			return err
		}
	}
	return nil
}

// Detector runs service and version detection. It is safe for concurrent use.
type Detector struct {
	db     *DB
	o      Options
	logger *slog.Logger
	dialer net.Dialer
	// badPatterns counts patterns that failed to compile; each is logged once.
	badPatterns atomic.Int64
}

// New loads the embedded probe database and the operator's files.
func New(o Options) (*Detector, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("service detection options: %w", err)
	}
	db := NewDB()
	f, err := embedded.Open(EmbeddedFile)
	if err != nil {
		return nil, fmt.Errorf("open embedded probes: %w", err)
	}
	defer f.Close()
	if err := db.Add(EmbeddedFile, f); err != nil {
		return nil, fmt.Errorf("load embedded probes: %w", err)
	}
	for _, name := range o.ProbeFiles {
		if err := addFile(db, name); err != nil {
			return nil, err
		}
	}
	if db.Probe("TCP", "NULL") == nil {
		return nil, errors.New("load probes: no TCP NULL probe")
	}
	bind, err := netif.New(o.Interface)
	if err != nil {
		return nil, fmt.Errorf("service detection options: %w", err)
	}
	return &Detector{db: db, o: o, logger: o.Logger, dialer: net.Dialer{Control: bind.Control}}, nil
}

func addFile(db *DB, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("load probe file: %w", err)
	}
	defer f.Close()
	if err := db.Add(name, f); err != nil {
		return fmt.Errorf("load probe file: %w", err)
	}
	return nil
}

// DB returns the detector's probe database.
func (d *Detector) DB() *DB { return d.db }

// BadPatterns returns how many patterns failed to compile so far.
func (d *Detector) BadPatterns() int64 { return d.badPatterns.Load() }

// CompileAll compiles every pattern now instead of on first use and returns
// how many failed (each is logged once).
func (d *Detector) CompileAll() int64 {
	for _, p := range d.db.Probes {
		for _, m := range p.Matches {
			d.regex(m)
		}
	}
	return d.badPatterns.Load()
}

func (d *Detector) regex(m *Match) bool {
	_, err := m.compile(MatchTimeout)
	if err == nil {
		return true
	}
	m.reportOnce.Do(func() {
		d.badPatterns.Add(1)
		d.logger.Warn("probe pattern does not compile, skipped", "file", m.File, "line", m.Line, "err", err)
	})
	return false
}

// Detect identifies the service on addr:port (TCP).
func (d *Detector) Detect(ctx context.Context, addr netip.Addr, port uint16) (*snapshot.Service, error) {
	if d.db.Exclude.Contains(port) {
		return nil, ErrExcluded
	}
	target := netip.AddrPortFrom(addr, port).String()
	plain := func(ctx context.Context) (net.Conn, error) { return d.dialer.DialContext(ctx, "tcp", target) }
	res := d.detectPhase(ctx, plain, port, false)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("detect %s: %w", target, ctx.Err())
	}
	if res.unreachable != nil {
		return nil, fmt.Errorf("detect %s: %w", target, res.unreachable)
	}
	if !res.tls {
		return res.service(), nil
	}
	secure := func(ctx context.Context) (net.Conn, error) {
		tc, err := dialTLS(ctx, plain)
		if err != nil {
			return nil, err
		}
		return tc, nil
	}
	inner := d.detectPhase(ctx, secure, port, true)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("detect %s inside tls: %w", target, ctx.Err())
	}
	s := inner.service()
	if s.Name == "tcpwrapped" {
		s.Name = "unknown"
	}
	s.Tunnel = "ssl"
	s.Cert = certFacts(res.cert)
	return s, nil
}

// dialTLS connects with dial and completes a TLS handshake on top.
func dialTLS(ctx context.Context, dial dialFunc) (*tls.Conn, error) {
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, tlsConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

func tlsConfig() *tls.Config {
	var suites []uint16
	for _, s := range tls.CipherSuites() {
		suites = append(suites, s.ID)
	}
	for _, s := range tls.InsecureCipherSuites() {
		suites = append(suites, s.ID)
	}
	return &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // detection records the certificate, it does not trust it
		MinVersion:         tls.VersionTLS10,
		CipherSuites:       suites,
	}
}

// Annotate fills Service on every open TCP port of s, concurrently, at most
// Options.Concurrency ports at a time, until ctx ends.
func (d *Detector) Annotate(ctx context.Context, s *snapshot.Snapshot) {
	sem := make(chan struct{}, d.o.Concurrency)
	var wg sync.WaitGroup
	for hi := range s.Hosts {
		h := &s.Hosts[hi]
		addr, err := netip.ParseAddr(h.Address)
		if err != nil {
			d.logger.Warn("service detection skips host", "address", h.Address, "err", err)
			continue
		}
		for pi := range h.Ports {
			p := &h.Ports[pi]
			if p.State != snapshot.StateOpen || p.Protocol != "tcp" {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				wg.Wait()
				return
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				svc, err := d.Detect(ctx, addr, p.Port)
				switch {
				case errors.Is(err, ErrExcluded):
				case err != nil:
					if ctx.Err() == nil {
						d.logger.Warn("service detection failed", "address", h.Address, "port", p.Port, "err", err)
					}
				default:
					p.Service = svc
				}
			}()
		}
	}
	wg.Wait()
}

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

// detectPhase sends the planned probes, each on its own connection, up to
// perPort at once, the NULL probe among the first, so a silent service does
// not cost a banner wait and a banner service does not wait for the rest.
// A hard match ends the phase (see held below for the two short waits); a
// softmatch narrows the probes still to be sent to those that can name that
// service, and is the verdict when no hard match follows.
func (d *Detector) detectPhase(ctx context.Context, dial dialFunc, port uint16, inTLS bool) phaseResult {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	probes := d.plan(port, inTLS)
	// expired reports whether the phase's timeout has passed. Probes'
	// connections carry the same deadline and may notice it before ctx
	// does, so the clock decides, not ctx.Err.
	phaseDeadline, _ := ctx.Deadline()
	expired := func() bool { return ctx.Err() != nil || !time.Now().Before(phaseDeadline) }
	results := make(chan outcome, len(probes)+1)
	var (
		mu       sync.Mutex
		softName string
		pending  = map[int]*Probe{} // launched, no outcome yet
		cancels  = map[int]context.CancelFunc{}
		next     int // probes[next:] are not launched yet
	)
	// mayMatch reports whether a probe running or still to be sent could
	// give a hard match for service.
	mayMatch := func(service string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range pending {
			if p.canMatch(service) {
				return true
			}
		}
		for _, p := range probes[next:] {
			if p.canMatch(service) {
				return true
			}
		}
		return false
	}
	sem := make(chan struct{}, perPort)
	var wg sync.WaitGroup
	launched := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(launched)
		if !inTLS {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results <- d.tlsProbe(ctx, dial)
			}()
		}
		for i, p := range probes {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			mu.Lock()
			skip := softName != "" && !p.canMatch(softName)
			var pctx context.Context
			if !skip {
				pending[i] = p
				pctx, cancels[i] = context.WithCancel(ctx)
			}
			next = i + 1
			mu.Unlock()
			if skip {
				<-sem
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				results <- d.runProbe(pctx, dial, i, p)
			}()
		}
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	// held is the best hard match so far, not yet final while (a) it is
	// HTTP and the TLS handshake probe may still succeed, since HTTPS
	// servers answer plain HTTP in HTTP (nginx: "plain HTTP request was
	// sent to HTTPS port"), or (b) it has no version and a probe still
	// running could give one, within a grace period.
	var (
		held, best      *outcome
		fp              fingerprint
		tlsPending      = !inTLS
		sawData         bool
		connected       bool
		dialErr         error
		versionWaitOver bool
		tlsSlow         bool
		graceTimer      <-chan time.Time
	)
	finish := func(r phaseResult) phaseResult {
		cancel()
		<-done
		return r
	}
	ready := func() bool {
		if held == nil {
			return false
		}
		if tlsPending && strings.HasPrefix(held.fields.Service, "http") {
			// HTTPS servers answer plain HTTP in HTTP; other protocols'
			// answers are not TLS, and a service that stalls a
			// ClientHello (redis, DNS) would hold the verdict 3 s.
			return false
		}
		if held.fields.Version != "" || versionWaitOver {
			return true
		}
		return !mayMatch(held.fields.Service)
	}
	// heldResult is the verdict held, cut when it has no version and the
	// phase's timeout stopped the probes, or the version wait ended while
	// a probe that could give the version was still running.
	heldResult := func() phaseResult {
		cut := held.fields.Version == "" && (expired() || versionWaitOver && mayMatch(held.fields.Service))
		return phaseResult{fields: held.fields, found: true, cut: cut}
	}
	take := func(o outcome) (phaseResult, bool) {
		sawData = sawData || len(o.data) > 0
		fp.see(o, probes)
		if o.dialErr != nil {
			dialErr = o.dialErr
		} else if o.idx >= 0 {
			connected = true
		}
		switch {
		case o.tls:
			return phaseResult{tls: true, cert: o.cert}, true
		case o.idx == tlsIdx:
			tlsPending, tlsSlow = false, o.tlsSlow
		case o.hard && o.fields.Service == "ssl" && !inTLS:
			// A file probe (an nmap-style TLS hello) named TLS; the
			// handshake probe confirms it and fetches the certificate.
		case o.hard:
			if held == nil || held.fields.Version == "" && o.fields.Version != "" {
				oc := o
				held = &oc
			}
			if graceTimer == nil {
				graceTimer = time.After(max(500*time.Millisecond, time.Since(start)))
			}
		case o.tcpwrapped && !sawData:
			return phaseResult{tcpwrapped: true}, true
		case o.soft:
			// o.tcpwrapped with data elsewhere: the service answered
			// another probe and merely drops idle connections.
			if best == nil || o.idx < best.idx {
				oc := o
				best = &oc
			}
			mu.Lock()
			if softName == "" {
				// Narrow: probes that cannot name this service are not
				// sent, and those running are stopped, freeing their
				// connections for the ones that can.
				softName = o.fields.Service
				for i, p := range pending {
					if !p.canMatch(softName) {
						cancels[i]()
					}
				}
			}
			mu.Unlock()
		}
		if ready() {
			return heldResult(), true
		}
		if held == nil && best != nil && !tlsPending && !mayMatch(best.fields.Service) {
			return phaseResult{fields: best.fields, found: true, cut: expired()}, true
		}
		return phaseResult{}, false
	}
	for {
		select {
		case o := <-results:
			mu.Lock()
			delete(pending, o.idx)
			if c, ok := cancels[o.idx]; ok {
				c()
				delete(cancels, o.idx)
			}
			mu.Unlock()
			if r, ok := take(o); ok {
				return finish(r)
			}
		case <-graceTimer:
			graceTimer = nil
			versionWaitOver = true
			if ready() {
				return finish(heldResult())
			}
		case <-launched:
			launched = nil
			if r, ok := take(outcome{idx: launchedIdx}); ok {
				return finish(r)
			}
		case <-done:
			// Every probe has ended; take what they sent last.
			for {
				select {
				case o := <-results:
					if r, ok := take(o); ok {
						return r
					}
					continue
				default:
				}
				break
			}
			// The phase's own timeout stopped the probes still running
			// or not yet sent: what they might have said is missing. A
			// TLS handshake that timed out where nothing else answered
			// may be a TLS service too slow to answer in time.
			cut := expired() || tlsSlow && held == nil && best == nil
			switch {
			case held != nil:
				return heldResult()
			case best != nil:
				return phaseResult{fields: best.fields, found: true, cut: cut}
			case !connected && dialErr != nil:
				return phaseResult{unreachable: dialErr}
			}
			return phaseResult{cut: cut, fingerprint: fp.String()}
		}
	}
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

// tlsProbe tries a TLS handshake. It is the phase's TLS detector: a server
// that completes one is examined again inside TLS.
func (d *Detector) tlsProbe(ctx context.Context, dial dialFunc) outcome {
	ctx, cancel := context.WithTimeout(ctx, tlsHandshakeWait)
	defer cancel()
	tc, err := dialTLS(ctx, dial)
	if err != nil {
		return outcome{idx: tlsIdx, tlsSlow: ctx.Err() != nil}
	}
	defer tc.NetConn().Close() // only the certificate was wanted: no close_notify
	o := outcome{idx: tlsIdx, tls: true}
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
		o.cert = certs[0]
	}
	return o
}

// runProbe sends one probe on a fresh connection and reads the reply,
// matching after every read so a recognised reply ends the wait at once.
func (d *Detector) runProbe(ctx context.Context, dial dialFunc, idx int, p *Probe) outcome {
	o := outcome{idx: idx}
	wait := p.TotalWait
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	start := time.Now()
	c, err := dial(ctx)
	if err != nil {
		o.dialErr = err
		return o
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	if len(p.Payload) > 0 {
		if _, err := c.Write(p.Payload); err != nil {
			return o
		}
	}
	buf := make([]byte, 0, 4096)
	for len(buf) < maxResponse {
		if cap(buf)-len(buf) < 1024 {
			buf = slices.Grow(buf, min(len(buf), maxResponse-len(buf)))
		}
		n, err := c.Read(buf[len(buf):min(cap(buf), maxResponse)])
		if n > 0 {
			buf = buf[:len(buf)+n]
			o.data = buf
			f, hard, soft := d.matchReply(p, buf)
			if hard {
				o.fields, o.hard = f, true
				return o
			}
			if soft && !o.soft {
				o.fields, o.soft = f, true
			}
			_ = c.SetReadDeadline(minTime(deadline, time.Now().Add(idleAfterData)))
			if ctx.Err() != nil {
				// Cancelled just before the line above undid the
				// cancellation's deadline.
				break
			}
		}
		if err != nil {
			if len(buf) == 0 && p.Name == "NULL" && isClosed(err) && time.Since(start) < p.TCPWrapped {
				o.tcpwrapped = true
			}
			break
		}
	}
	return o
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// match tries p's patterns, then its fallbacks', on the response and returns
// the first hard match, or else the first softmatch.
func (d *Detector) match(p *Probe, resp []byte) (Fields, bool, bool) {
	runes := bytesToRunes(resp)
	var soft *Fields
	for _, q := range append([]*Probe{p}, p.fallbacks...) {
		for _, m := range q.Matches {
			if soft != nil && m.Soft {
				continue
			}
			if !d.regex(m) {
				continue
			}
			groups, err := m.exec(runes, MatchTimeout)
			if err != nil {
				d.logger.Debug("probe pattern gave up", "probe", p.Name, "err", err)
				continue
			}
			if groups == nil {
				continue
			}
			f, err := m.fill(groups)
			if err != nil {
				d.logger.Debug("version template failed", "err", err)
				continue
			}
			if !m.Soft {
				return f, true, false
			}
			soft = &f
		}
	}
	if soft != nil {
		return *soft, false, true
	}
	return Fields{}, false, false
}

// certFacts records the leaf certificate facts users track as drift.
func certFacts(c *x509.Certificate) *snapshot.Cert {
	if c == nil {
		return nil
	}
	sum := sha256.Sum256(c.Raw)
	var sans []string
	sans = append(sans, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		sans = append(sans, ip.String())
	}
	sans = append(sans, c.EmailAddresses...)
	for _, u := range c.URIs {
		sans = append(sans, u.String())
	}
	// Names from an untrusted certificate: cleaned and bounded like banners.
	const maxSANs = 100
	if len(sans) > maxSANs {
		sans = sans[:maxSANs]
	}
	for i := range sans {
		sans[i] = textsafe.Clean(sans[i], 256)
	}
	return &snapshot.Cert{
		Subject:     textsafe.Clean(c.Subject.String(), 512),
		Issuer:      textsafe.Clean(c.Issuer.String(), 512),
		SANs:        sans,
		NotBefore:   c.NotBefore.UTC(),
		NotAfter:    c.NotAfter.UTC(),
		Fingerprint: hex.EncodeToString(sum[:]),
	}
}
