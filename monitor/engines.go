package monitor

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/config"
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
	e, err := scanner.NewEngine(kind, scanner.EngineOptions{Limiter: s.limiter, Logger: logger, Bind: bind})
	if err != nil {
		return nil, fmt.Errorf("scan engine %s: %w", kind, err)
	}
	s.m[key] = e
	return e, nil
}

// annotator detects the services of the open ports of a snapshot,
// keeping those whose cheap fingerprint still holds
// (service.Detector.AnnotateIncremental).
type annotator interface {
	AnnotateIncremental(ctx context.Context, s *snapshot.Snapshot, prior func(addr string, port uint16) (service.Prior, bool), done func(service.Detected))
}

// sweepTarget is the scanning half of a job: the sweep with the target's
// engine (bound by bind, which binds the sweep's DNS too), then service
// detection on the open ports when enabled (detectServices). A detection
// cut short by ctx leaves the snapshot incomplete.
func sweepTarget(ctx context.Context, e scanner.Engine, bind *netif.Binding, det annotator, t *config.Target) (*snapshot.Snapshot, error) {
	snap, err := scanner.Sweep(ctx, e, t.TargetSpec, scanner.SweepOptions{
		Target: t.Name, Ports: t.PortSpec, Retries: t.Retries, ReverseDNS: t.ReverseDNS, Bind: bind,
	})
	if err != nil {
		return snap, fmt.Errorf("sweep: %w", err)
	}
	detectServices(ctx, det, snap)
	return snap, nil
}

// detectServices runs service detection on a complete sweep. With the
// job's reuse plan (on ctx, see withReuse) a port the plan offers keeps
// its previous service when its Check still holds, and the plan learns
// every port's outcome; without one every open port is detected in full.
func detectServices(ctx context.Context, det annotator, snap *snapshot.Snapshot) {
	if !snap.Complete || det == nil || snap.OpenPorts() == 0 {
		return
	}
	r := reuseFrom(ctx)
	if r == nil {
		r = &svReuse{}
	}
	det.AnnotateIncremental(ctx, snap, r.prior, r.done)
	if ctx.Err() != nil {
		snap.Complete = false
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

// svKey names one port of one host.
type svKey struct {
	addr  string
	port  uint16
	proto string
}

// svEntry is a port's last full detection: when (unix nanoseconds) and
// its cheap fingerprint.
type svEntry struct {
	at    int64
	check service.Check
}

// svDetections holds the detections of every target, for the daemon's
// lifetime. Safe for concurrent jobs.
type svDetections struct {
	mu sync.Mutex
	m  map[string]map[svKey]svEntry
}

func newSVDetections() *svDetections {
	return &svDetections{m: map[string]map[svKey]svEntry{}}
}

// svReuse is one job's reuse plan: the services it offers for a cheap
// check, by port, and what detection did on each port.
type svReuse struct {
	keep map[svKey]reused

	mu      sync.Mutex
	results map[svKey]svEntry
}

type reused struct {
	svc   *snapshot.Service
	entry svEntry
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
	h.Write([]byte(k.addr))
	h.Write([]byte{byte(k.port >> 8), byte(k.port), 0})
	h.Write([]byte(k.proto))
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

// plan returns the job's reuse plan: the services of prev (the previous
// complete snapshot; nil for none) whose last full detection left a
// fingerprint and is not due for refresh at now. A plan is returned even
// when it keeps nothing, so the job learns the fingerprints of its
// detections.
func (d *svDetections) plan(target string, prev *snapshot.Snapshot, now time.Time, refresh time.Duration) *svReuse {
	r := &svReuse{keep: map[svKey]reused{}, results: map[svKey]svEntry{}}
	if prev == nil || !prev.Complete || refresh <= 0 {
		return r
	}
	d.mu.Lock()
	entries := d.m[target]
	d.mu.Unlock()
	if len(entries) == 0 {
		return r
	}
	for _, h := range prev.Hosts {
		for _, p := range h.Ports {
			if p.State != snapshot.StateOpen || p.Service == nil {
				continue
			}
			k := svKey{h.Address, p.Port, p.Protocol}
			e, ok := entries[k]
			if !ok || !e.check.Valid() || refreshDue(target, k, e.at, now.UnixNano(), refresh) {
				continue
			}
			r.keep[k] = reused{p.Service, e}
		}
	}
	return r
}

// prior offers the kept service of a TCP port for its cheap check.
func (r *svReuse) prior(addr string, port uint16) (service.Prior, bool) {
	k, ok := r.keep[svKey{addr, port, "tcp"}]
	if !ok {
		return service.Prior{}, false
	}
	return service.Prior{Service: k.svc, Check: k.entry.check}, true
}

// done learns one port's outcome: a kept service keeps its entry, a full
// detection gets a new one, stamped with the job's start by record.
func (r *svReuse) done(o service.Detected) {
	if r.results == nil {
		return
	}
	k := svKey{o.Address, o.Port.Port, o.Port.Protocol}
	e := svEntry{check: o.Check}
	if o.Kept {
		e = r.keep[k].entry
	} else {
		e.at = -1 // detected in this job
	}
	r.mu.Lock()
	r.results[k] = e
	r.mu.Unlock()
}

// record replaces the target's detections from a complete snapshot: a
// port whose service passed its check keeps its entry, any other service
// was detected in this scan, started at now. Ports without a service are
// forgotten. It returns how many services r kept and how many it saw
// detected in full.
func (d *svDetections) record(target string, snap *snapshot.Snapshot, r *svReuse, now time.Time) (kept, full int) {
	entries := make(map[svKey]svEntry, snap.OpenPorts())
	for _, h := range snap.Hosts {
		for _, p := range h.Ports {
			if p.State != snapshot.StateOpen || p.Service == nil {
				continue
			}
			k := svKey{h.Address, p.Port, p.Protocol}
			e := svEntry{at: now.UnixNano()}
			if r != nil {
				if got, ok := r.results[k]; ok && got.at >= 0 {
					e = got
					kept++
				} else if ok {
					e.check = got.check
					full++
				}
			}
			entries[k] = e
		}
	}
	d.mu.Lock()
	d.m[target] = entries
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

// engineProber re-probes exactly the given pairs with a scan engine; the
// differ confirms pending changes with it.
type engineProber struct {
	engine  scanner.Engine
	retries int
}

// Probe returns the state of every pair that got a verdict.
func (p engineProber) Probe(ctx context.Context, pairs []spec.Pair) (map[spec.Pair]string, error) {
	out := make(map[spec.Pair]string, len(pairs))
	_, err := p.engine.Scan(ctx, scanner.Job{Pairs: spec.NewPairList(pairs), Retries: p.retries}, func(r scanner.Result) {
		out[spec.Pair{Addr: r.Addr, Port: r.Port}] = r.State
	})
	if err != nil {
		return out, fmt.Errorf("re-probe: %w", err)
	}
	return out, nil
}
