package service

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/snapshot"
)

//go:embed probes/exposure-service-probes probes/exposure-udp-probes
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
	maxProductLen = 80
	maxInfoLen    = 160
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
	// Bind, if set, binds every connection (plain and TLS) to its network
	// interface (SO_BINDTODEVICE, like nmap's -e); a destination not
	// routed through it is not connected to. The interface may appear
	// after New; a detection while it is missing fails naming it.
	Bind *netif.Binding
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
	if err := udpDB(db); err != nil {
		return nil, err
	}
	for _, name := range o.ProbeFiles {
		if err := addFile(db, name); err != nil {
			return nil, err
		}
	}
	if db.Probe("TCP", "NULL") == nil {
		return nil, errors.New("load probes: no TCP NULL probe")
	}
	return &Detector{db: db, o: o, logger: o.Logger, dialer: net.Dialer{Control: o.Bind.Control}}, nil
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
	s, _, err := d.detect(ctx, addr, port)
	return s, err
}

// detect is Detect that also returns the detection's Check (reuse.go).
func (d *Detector) detect(ctx context.Context, addr netip.Addr, port uint16) (*snapshot.Service, Check, error) {
	if d.db.Exclude.Contains(port) {
		return nil, Check{}, ErrExcluded
	}
	target := netip.AddrPortFrom(addr, port).String()
	plain := d.plainDial(target)
	res := d.detectPhase(ctx, plain, port, false)
	if ctx.Err() != nil {
		return nil, Check{}, fmt.Errorf("detect %s: %w", target, ctx.Err())
	}
	if res.unreachable != nil {
		return nil, Check{}, fmt.Errorf("detect %s: %w", target, res.unreachable)
	}
	if !res.tls {
		return res.service(), res.check, nil
	}
	s, err := d.detectInTLS(ctx, plain, port, res.cert)
	if err != nil {
		return nil, Check{}, fmt.Errorf("detect %s inside tls: %w", target, err)
	}
	return s, tlsCheck(res.cert), nil
}

func (d *Detector) plainDial(target string) dialFunc {
	return func(ctx context.Context) (net.Conn, error) { return d.dialer.DialContext(ctx, "tcp", target) }
}

// Annotate fills Service on every open TCP port of s, concurrently, at most
// Options.Concurrency ports at a time, until ctx ends.
func (d *Detector) Annotate(ctx context.Context, s *snapshot.Snapshot) {
	d.eachOpenPort(ctx, s, "tcp", func(addr netip.Addr, p *snapshot.Port) { d.annotatePort(ctx, addr, p) })
}

// annotatePort sets the Service of one open TCP port from Detect.
func (d *Detector) annotatePort(ctx context.Context, addr netip.Addr, p *snapshot.Port) {
	svc, err := d.Detect(ctx, addr, p.Port)
	if err != nil {
		d.logDetectErr(ctx, addr, p.Port, err)
		return
	}
	p.Service = svc
}

// logDetectErr logs a failed detection, unless the port is excluded or
// ctx ended.
func (d *Detector) logDetectErr(ctx context.Context, addr netip.Addr, port uint16, err error) {
	if errors.Is(err, ErrExcluded) || ctx.Err() != nil {
		return
	}
	d.logger.Warn("service detection failed", "address", addr, "port", port, "err", err)
}

// eachOpenPort runs fn for every open port of protocol proto in s, at most
// Options.Concurrency at a time, and returns when all have returned; once
// ctx ends no further port is started.
func (d *Detector) eachOpenPort(ctx context.Context, s *snapshot.Snapshot, proto string, fn func(netip.Addr, *snapshot.Port)) {
	sem := make(chan struct{}, d.o.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for hi := range s.Hosts {
		h := &s.Hosts[hi]
		addr, err := netip.ParseAddr(h.Address)
		if err != nil {
			d.logger.Warn("service detection skips host", "address", h.Address, "err", err)
			continue
		}
		for pi := range h.Ports {
			p := &h.Ports[pi]
			if p.State != snapshot.StateOpen || p.Protocol != proto {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				fn(addr, p)
			}()
		}
	}
}

// readBufSize is the read buffer a probe starts with; most replies fit.
const readBufSize = 4096

// readBufs are the probes' read buffers: a -sV of an estate runs hundreds
// of thousands of probes, each of which would otherwise allocate one.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 0, readBufSize); return &b }}

// runProbe sends one probe on a fresh connection and reads the reply,
// matching after every read so a recognised reply ends the wait at once.
func (d *Detector) runProbe(ctx context.Context, dial dialFunc, idx int, p *Probe) (o outcome) {
	o.idx = idx
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
	bp := readBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		// The reply leaves in a copy of its own size; the read buffer
		// goes back for the next probe unless it grew.
		o.data = bytes.Clone(o.data)
		if cap(buf) == readBufSize {
			*bp = buf[:0]
			readBufs.Put(bp)
		}
	}()
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
				f.matched = m.sum(f)
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
