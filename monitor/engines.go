package monitor

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/diff"
	"github.com/exposure-monitor/exposure/scanner"
	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/scanner/service"
	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// engineSet holds one scan engine per kind and interface (global.interface)
// for the daemon's lifetime; all of them draw from the one shared
// packet-rate limiter (global.scan_rate).
type engineSet struct {
	limiter *rate.Limiter
	logger  *slog.Logger

	mu sync.Mutex
	m  map[string]scanner.Engine
}

func newEngineSet(limiter *rate.Limiter, logger *slog.Logger) *engineSet {
	return &engineSet{limiter: limiter, logger: logger, m: map[string]scanner.Engine{}}
}

// get returns the engine of a kind bound by bind (nil for none), creating
// it on first use. A binding is no more than its interface's name, so an
// engine made for an earlier configuration's binding to the same interface
// serves a later one. A reload that asks for syn without CAP_NET_RAW fails
// here, before anything is swapped; a missing interface does not (scans
// fail while it is missing).
func (s *engineSet) get(kind string, bind *netif.Binding) (scanner.Engine, error) {
	if kind == "" {
		kind = scanner.KindAuto
	}
	key := kind + "|" + bind.Name()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok {
		return e, nil
	}
	logger := s.logger.With("engine", kind)
	if bind != nil {
		logger = logger.With("interface", bind.Name())
	}
	var e scanner.Engine
	if kind == scanner.KindUDP {
		pool, err := newUDPPool(scanner.UDPOptions{Limiter: s.limiter, Logger: logger, Bind: bind})
		if err != nil {
			return nil, fmt.Errorf("scan engine %s: %w", kind, err)
		}
		e = pool
	} else {
		var err error
		if e, err = scanner.NewEngine(kind, scanner.EngineOptions{Limiter: s.limiter, Logger: logger, Bind: bind}); err != nil {
			return nil, fmt.Errorf("scan engine %s: %w", kind, err)
		}
	}
	s.m[key] = e
	return e, nil
}

// forTarget returns the engines target t scans with: its engine for the
// TCP ports and, when it has UDP ports, the UDP engine.
func (s *engineSet) forTarget(t *config.Target, bind *netif.Binding) (scanner.Engines, error) {
	var out scanner.Engines
	var err error
	if t.PortSpec.TCP.Len() > 0 {
		if out.TCP, err = s.get(t.Engine, bind); err != nil {
			return out, err
		}
	}
	if t.PortSpec.UDP.Len() > 0 {
		if out.UDP, err = s.get(scanner.KindUDP, bind); err != nil {
			return out, err
		}
	}
	return out, nil
}

// udpPool is the daemon's UDP engine: it hands each concurrent scan a
// scanner.UDP of its own, since a UDP engine's probes leave from one fixed
// source port that only one scan at a time can bind. Engines are kept for
// the next scans; each has a distinct source port.
type udpPool struct {
	opts scanner.UDPOptions

	mu    sync.Mutex
	free  []*scanner.UDP
	ports map[uint16]bool
}

var _ scanner.Engine = (*udpPool)(nil)

// newUDPPool checks that UDP scans can run (raw ICMP sockets) by making
// the pool's first engine.
func newUDPPool(o scanner.UDPOptions) (*udpPool, error) {
	p := &udpPool{opts: o, ports: map[uint16]bool{}}
	u, err := p.newEngine()
	if err != nil {
		return nil, err
	}
	p.free = append(p.free, u)
	return p, nil
}

// maxSourcePortTries bounds the draws of a source port no engine of the
// pool has.
const maxSourcePortTries = 16

func (p *udpPool) newEngine() (*scanner.UDP, error) {
	for range maxSourcePortTries {
		u, err := scanner.NewUDP(p.opts)
		if err != nil {
			return nil, err
		}
		if !p.ports[u.SourcePort()] {
			p.ports[u.SourcePort()] = true
			return u, nil
		}
	}
	return nil, fmt.Errorf("udp engine: no free source port after %d tries", maxSourcePortTries)
}

// Name implements scanner.Engine.
func (p *udpPool) Name() string { return scanner.KindUDP }

// Scan implements scanner.Engine with an engine no other scan is using.
func (p *udpPool) Scan(ctx context.Context, job scanner.Job, emit func(scanner.Result)) (scanner.Stats, error) {
	p.mu.Lock()
	var u *scanner.UDP
	if n := len(p.free); n > 0 {
		u, p.free = p.free[n-1], p.free[:n-1]
	} else {
		var err error
		if u, err = p.newEngine(); err != nil {
			p.mu.Unlock()
			return scanner.Stats{}, err
		}
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.free = append(p.free, u)
		p.mu.Unlock()
	}()
	return u.Scan(ctx, job, emit)
}

// annotator detects the services of the open ports of a snapshot: the
// TCP ports, keeping those whose cheap fingerprint still holds
// (service.Detector.AnnotateIncremental), and the UDP ports given to it
// (service.Detector.AnnotateUDP).
type annotator interface {
	AnnotateIncremental(ctx context.Context, s *snapshot.Snapshot, prior func(addr string, port uint16) (service.Prior, bool), done func(service.Detected))
	AnnotateUDP(ctx context.Context, s *snapshot.Snapshot)
}

// sweepTarget is the scanning half of a job: the sweep of the target's
// TCP ports with its engine and of its UDP ports with the UDP engine, into
// one snapshot (scanner.SweepSpec; bound by bind, which binds the sweep's
// DNS too), then service detection on the open ports when enabled
// (detectServices). A detection cut short by ctx leaves the snapshot
// incomplete.
func sweepTarget(ctx context.Context, e scanner.Engines, bind *netif.Binding, det annotator, t *config.Target) (*snapshot.Snapshot, error) {
	snap, err := scanner.SweepSpec(ctx, e, t.TargetSpec, t.PortSpec, scanner.SweepOptions{
		Target: t.Name, Retries: t.Retries, ReverseDNS: t.ReverseDNS, Bind: bind,
	})
	if err != nil {
		return snap, fmt.Errorf("sweep: %w", err)
	}
	detectServices(ctx, det, snap)
	snap.ShareServices()
	return snap, nil
}

// detectServices runs service detection on a complete sweep. With the
// job's reuse plan (on ctx, see withReuse) a TCP port the plan offers
// keeps its previous service when its Check still holds, a UDP port (UDP
// detection has no Check: its probes are a few datagrams) keeps it until
// its refresh is due, and the plan learns every port's outcome; without
// one every open port is detected in full.
func detectServices(ctx context.Context, det annotator, snap *snapshot.Snapshot) {
	if !snap.Complete || det == nil || snap.OpenPorts() == 0 {
		return
	}
	r := reuseFrom(ctx)
	if r == nil {
		r = &svReuse{}
	}
	r.applyUDP(snap)
	det.AnnotateIncremental(ctx, snap, r.prior, r.done)
	annotateMissingUDP(ctx, det, snap)
	if ctx.Err() != nil {
		snap.Complete = false
	}
}

// annotateMissingUDP runs UDP detection on the open UDP ports of snap
// without a service: det.AnnotateUDP probes every open UDP port of the
// snapshot it is given, so it gets a copy holding only those, and the
// services found are copied back (a reused service is not probed again).
func annotateMissingUDP(ctx context.Context, det annotator, snap *snapshot.Snapshot) {
	type at struct{ host, port int }
	var (
		sub  = &snapshot.Snapshot{Target: snap.Target, Complete: true}
		back [][]at // per sub host, per sub port: where it came from
	)
	for hi, h := range snap.Hosts {
		var ports []snapshot.Port
		var from []at
		for pi, p := range h.Ports {
			if p.Protocol == spec.ProtoUDP && p.State == snapshot.StateOpen && p.Service == nil {
				ports = append(ports, p)
				from = append(from, at{hi, pi})
			}
		}
		if len(ports) > 0 {
			sub.Hosts = append(sub.Hosts, snapshot.Host{Address: h.Address, State: h.State, Ports: ports})
			back = append(back, from)
		}
	}
	if len(sub.Hosts) == 0 {
		return
	}
	det.AnnotateUDP(ctx, sub)
	r := reuseFrom(ctx)
	for i, h := range sub.Hosts {
		for j, p := range h.Ports {
			if p.Service != nil {
				src := back[i][j]
				dst := &snap.Hosts[src.host].Ports[src.port]
				dst.Service = p.Service
				if r != nil {
					r.detected(h.Address, dst, service.Check{})
				}
			}
		}
	}
}

// Incremental service detection. The daemon remembers, per target and
// (address, port, protocol), when the service of each open port was last
// detected in full and that detection's cheap fingerprint
// (service.Check: the hash of the reply bytes that matched, or of the TLS
// certificate). On a re-scan a port that was open in the previous
// complete scan gets only the cheap check (one connection) and keeps its
// previous service when the fingerprint is the same; new ports, ports
// whose fingerprint changed or that have none, and ports due for their
// refresh get a full detection.
//
// A port is due once per service_detection.refresh, at a point of that
// period fixed by a hash of the target and port (refreshDue), so the full
// detections of a large estate spread over the scans of the period
// instead of coming all at once refresh after the baseline. A version
// that changes behind an unchanged fingerprint is found within refresh
// (plus one scan interval); one behind a changed banner or certificate in
// the same scan.
//
// The state lives in memory only (about 60 bytes per open port; nothing
// is stored, so an unchanged scan still adds nothing to the database):
// after a restart every open port is detected once in full, which is the
// safe side.

// svKey names one port of one host, without pointers (a map of an
// estate's keys is not scanned by the GC): the address's 16 bytes (an
// IPv4 address as IPv4-mapped), the port and the protocol.
type svKey struct {
	addr  [16]byte
	port  uint16
	proto uint8
}

const (
	svTCP uint8 = iota
	svUDP
)

func newSVKey(addr string, port uint16, proto string) (svKey, bool) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return svKey{}, false
	}
	k := svKey{addr: a.As16(), port: port, proto: svTCP}
	if proto == spec.ProtoUDP {
		k.proto = svUDP
	}
	return k, true
}

// svEntry is a port's last detection: when it ran in full (unix
// nanoseconds), its cheap fingerprint (service.Check, with the probe's
// name as an index into svDetections' probe names) and the service it
// found, shared with the target's latest snapshot; mark is the record
// that last saw the port (see record). 32 bytes: an estate keeps one per
// open port.
type svEntry struct {
	at    int64
	sum   uint64
	svc   *snapshot.Service
	mark  uint32
	probe uint16 // 1 + index into probes; 0 for none
	tls   bool
}

// svTable is one target's detections: an entry per open port with a
// service, sorted by key and found by binary search. A record is 56
// bytes, laid end to end; a map of the same entries took about 105 a
// port of the /16 estate (its groups' free slots and growth), and an
// estate keeps one per open port between scans.
type svTable []svRecord

type svRecord struct {
	k svKey
	e svEntry
}

func cmpSVKey(a, b svKey) int {
	if c := bytes.Compare(a.addr[:], b.addr[:]); c != 0 {
		return c
	}
	if c := cmp.Compare(a.port, b.port); c != 0 {
		return c
	}
	return cmp.Compare(a.proto, b.proto)
}

// find returns the index of k's record, or -1.
func (t svTable) find(k svKey) int {
	i, ok := slices.BinarySearchFunc(t, k, func(r svRecord, k svKey) int { return cmpSVKey(r.k, k) })
	if !ok {
		return -1
	}
	return i
}

// get returns k's entry.
func (t svTable) get(k svKey) (svEntry, bool) {
	if i := t.find(k); i >= 0 {
		return t[i].e, true
	}
	return svEntry{}, false
}

// svDetections holds the detections of every target, for the daemon's
// lifetime. Safe for concurrent jobs. A job owns its target's detections
// from plan to record (or restore): it reads them without a lock and
// record updates them in place when the scan found no port the table
// lacks, so an unchanged re-scan of an estate holds one table of its
// ports, not the old one and a new one. A second job of the same
// target meanwhile (a run by hand while the scheduled one is running)
// finds none and detects every port in full.
type svDetections struct {
	mu    sync.Mutex
	m     map[string]svTable
	marks uint32
	// probes are the names of the probes whose replies fingerprint a
	// port (a few dozen), and their indices.
	probes   []string
	probeIdx map[string]uint16
}

// entry is a new detection's entry at (unix nanos) with check.
func (d *svDetections) entry(at int64, c service.Check) svEntry {
	e := svEntry{at: at, sum: c.Sum, tls: c.TLS}
	if c.Probe != "" {
		d.mu.Lock()
		i, ok := d.probeIdx[c.Probe]
		if !ok && len(d.probes) < 1<<16-1 {
			d.probes = append(d.probes, c.Probe)
			i = uint16(len(d.probes))
			d.probeIdx[c.Probe] = i
		}
		d.mu.Unlock()
		e.probe = i
	}
	return e
}

// check is the fingerprint of e.
func (d *svDetections) check(e svEntry) service.Check {
	c := service.Check{Sum: e.sum, TLS: e.tls}
	if e.probe > 0 {
		d.mu.Lock()
		c.Probe = d.probes[e.probe-1]
		d.mu.Unlock()
	}
	return c
}

func newSVDetections() *svDetections {
	return &svDetections{m: map[string]svTable{}, probeIdx: map[string]uint16{}}
}

// svReuse is one job's reuse plan: the target's detections as the job
// found them (owned by the job, read only until record), and the ports
// it detected in full (fresh, which done and annotateMissingUDP fill).
type svReuse struct {
	d       *svDetections
	target  string
	last    svTable
	now     int64
	refresh time.Duration
	// pool shares the services detected as they come (done), so that
	// an estate's ports do not each hold a copy of the same few.
	pool snapshot.ServicePool

	mu    sync.Mutex
	fresh map[svKey]service.Check
}

// refreshDue reports whether a port detected at (unix nanos) is due for
// a full detection at now: each port's refresh period is shifted by an
// offset in [0, refresh) taken from a hash of target and key, and a port
// is due once now has crossed a period boundary since at. So each port is
// detected in full at least once per refresh, and the ports detected
// together at a baseline come due at different scans.
func refreshDue(target string, k svKey, at, now int64, refresh time.Duration) bool {
	if refresh <= 0 || now-at >= int64(refresh) {
		return true
	}
	h := fnv.New64a()
	h.Write([]byte(target))
	h.Write([]byte{0})
	h.Write(k.addr[:])
	h.Write([]byte{byte(k.port >> 8), byte(k.port), k.proto})
	off := int64(h.Sum64() % uint64(refresh))
	return floorDiv(now+off, int64(refresh)) != floorDiv(at+off, int64(refresh))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// plan returns the job's reuse plan and hands it the target's detections.
// prev is the previous complete snapshot (nil for none): without one
// nothing is kept. A plan is returned even when it keeps nothing, so the
// job learns the fingerprints of its detections.
func (d *svDetections) plan(target string, prev *snapshot.Snapshot, now time.Time, refresh time.Duration) *svReuse {
	r := &svReuse{d: d, target: target, now: now.UnixNano(), refresh: refresh, fresh: map[svKey]service.Check{}}
	d.mu.Lock()
	r.last = d.m[target]
	delete(d.m, target)
	d.mu.Unlock()
	if prev == nil || !prev.Complete || refresh <= 0 {
		r.last = nil // nothing to keep; record starts afresh
	}
	return r
}

// restore gives back the detections of a job that records nothing (its
// scan incomplete, its commit failed), unless another job has recorded
// since.
func (d *svDetections) restore(r *svReuse) {
	if d == nil || r == nil || r.last == nil {
		return
	}
	d.mu.Lock()
	if _, ok := d.m[r.target]; !ok {
		d.m[r.target] = r.last
	}
	d.mu.Unlock()
	r.last = nil
}

// kept is the entry of a port the job may keep: detected before, with a
// fingerprint (TCP), and not due for its refresh.
func (r *svReuse) kept(k svKey) (svEntry, bool) {
	e, ok := r.last.get(k)
	if !ok || e.svc == nil || (k.proto == svTCP && !e.tls && e.probe == 0) || refreshDue(r.target, k, e.at, r.now, r.refresh) {
		return svEntry{}, false
	}
	return e, true
}

// prior offers the kept service of a TCP port for its cheap check.
func (r *svReuse) prior(addr string, port uint16) (service.Prior, bool) {
	k, ok := newSVKey(addr, port, spec.ProtoTCP)
	if !ok {
		return service.Prior{}, false
	}
	e, ok := r.kept(k)
	if !ok {
		return service.Prior{}, false
	}
	return service.Prior{Service: e.svc, Check: r.d.check(e)}, true
}

// applyUDP copies the kept services of the open UDP ports of snap that
// have none onto them.
func (r *svReuse) applyUDP(snap *snapshot.Snapshot) {
	snap.EachOpenPort(func(h *snapshot.Host, p *snapshot.Port) {
		if p.Protocol != spec.ProtoUDP || p.Service != nil {
			return
		}
		if k, ok := newSVKey(h.Address, p.Port, p.Protocol); ok {
			if e, ok := r.kept(k); ok {
				p.Service = e.svc
			}
		}
	})
}

// done learns one port's outcome: a full detection is fresh, with its
// fingerprint; a kept service keeps its entry.
func (r *svReuse) done(o service.Detected) {
	o.Port.Service = r.pool.Share(o.Port.Service)
	if !o.Kept {
		r.detected(o.Address, o.Port, o.Check)
	}
}

// detected notes that the service of p was detected in full in this job.
func (r *svReuse) detected(addr string, p *snapshot.Port, check service.Check) {
	k, ok := newSVKey(addr, p.Port, p.Protocol)
	if !ok || r.fresh == nil { // no plan: nothing to learn
		return
	}
	r.mu.Lock()
	r.fresh[k] = check
	r.mu.Unlock()
}

// record makes the target's detections those of a complete snapshot: a
// port detected in full in this job (fresh) is stamped with now, a kept
// one keeps its entry, a port with a service and neither (no plan) is
// stamped with now. Ports without a service are forgotten. When every
// port with a service already has a record (an unchanged or shrunk
// estate), the job's table is updated in place; otherwise a new table of
// exactly those ports replaces it. It returns how many services were kept
// and how many were detected in full.
func (d *svDetections) record(target string, snap *snapshot.Snapshot, r *svReuse, now time.Time) (kept, full int) {
	var t svTable
	var fresh map[svKey]service.Check
	if r != nil {
		t, fresh, r.last = r.last, r.fresh, nil
	}
	d.mu.Lock()
	d.marks++
	mark := d.marks
	d.mu.Unlock()
	// each calls f with the key of every open port with a service.
	each := func(f func(k svKey, p *snapshot.Port)) {
		snap.EachOpenPort(func(h *snapshot.Host, p *snapshot.Port) {
			if p.Service == nil {
				return
			}
			if k, ok := newSVKey(h.Address, p.Port, p.Protocol); ok {
				f(k, p)
			}
		})
	}
	update := func(k svKey, e svEntry, had bool, p *snapshot.Port) svEntry {
		if check, ok := fresh[k]; ok || !had {
			e = d.entry(now.UnixNano(), check)
			if ok {
				full++
			}
		} else {
			kept++
		}
		e.svc, e.mark = p.Service, mark
		return e
	}
	with, missing := 0, 0
	each(func(k svKey, _ *snapshot.Port) {
		with++
		if t.find(k) < 0 {
			missing++
		}
	})
	if missing == 0 {
		each(func(k svKey, p *snapshot.Port) {
			i := t.find(k)
			if t[i].e.mark != mark { // a port listed twice counts once
				t[i].e = update(k, t[i].e, true, p)
			}
		})
		if len(t) != with { // ports closed, or cut short after done
			n := 0
			for _, rec := range t {
				if rec.e.mark == mark {
					t[n] = rec
					n++
				}
			}
			clear(t[n:])
			t = t[:n]
			if n < cap(t)/2 {
				t = slices.Clone(t)
			}
		}
	} else {
		nt := make(svTable, 0, with)
		each(func(k svKey, p *snapshot.Port) {
			e, had := t.get(k)
			nt = append(nt, svRecord{k: k, e: update(k, e, had, p)})
		})
		slices.SortFunc(nt, func(a, b svRecord) int { return cmpSVKey(a.k, b.k) })
		t = slices.CompactFunc(nt, func(a, b svRecord) bool { return a.k == b.k })
	}
	d.mu.Lock()
	d.m[target] = t
	d.mu.Unlock()
	return kept, full
}

type reuseCtxKey struct{}

// withReuse hands a job's reuse plan to its scan function (detectServices)
// without widening scanFunc.
func withReuse(ctx context.Context, r *svReuse) context.Context {
	if r == nil {
		return ctx
	}
	return context.WithValue(ctx, reuseCtxKey{}, r)
}

func reuseFrom(ctx context.Context) *svReuse {
	r, _ := ctx.Value(reuseCtxKey{}).(*svReuse)
	return r
}

// engineProber re-probes exactly the given pairs with the target's
// engines, each protocol with its own; the differ confirms pending changes
// with it.
type engineProber struct {
	engines scanner.Engines
	retries int
}

var _ diff.Prober = engineProber{}

// Probe returns the state of every pair that got a verdict.
func (p engineProber) Probe(ctx context.Context, proto string, pairs []spec.Pair) (map[spec.Pair]string, error) {
	e := p.engines.TCP
	if proto == spec.ProtoUDP {
		e = p.engines.UDP
	}
	if e == nil {
		return nil, fmt.Errorf("re-probe: no %s engine for this target", proto)
	}
	out := make(map[spec.Pair]string, len(pairs))
	_, err := e.Scan(ctx, scanner.Job{Pairs: spec.NewPairList(pairs), Retries: p.retries}, func(r scanner.Result) {
		out[spec.Pair{Addr: r.Addr, Port: r.Port}] = r.State
	})
	if err != nil {
		return out, fmt.Errorf("re-probe %s: %w", proto, err)
	}
	return out, nil
}
