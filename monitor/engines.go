package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/scanner"
	"github.com/exposure-monitor/exposure/scanner/netif"
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

// annotator fills in the services of the open ports of a snapshot that
// have none yet (service.Detector.AnnotateMissing).
type annotator interface {
	AnnotateMissing(ctx context.Context, s *snapshot.Snapshot)
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

// detectServices runs service detection on a complete sweep: first the
// services the job's reuse plan (on ctx, see withReuse) keeps are copied
// onto their ports, then det probes the open ports left without one.
func detectServices(ctx context.Context, det annotator, snap *snapshot.Snapshot) {
	if !snap.Complete || det == nil || snap.OpenPorts() == 0 {
		return
	}
	if r := reuseFrom(ctx); r != nil {
		r.apply(snap)
	}
	det.AnnotateMissing(ctx, snap)
	if ctx.Err() != nil {
		snap.Complete = false
	}
}

// Incremental service detection. The daemon remembers, per target and
// (address, port, protocol), when the service of each open port was last
// really detected. Before a scan's detection, a port that was open with
// the same protocol in the previous complete scan, and whose service was
// detected less than service_detection.refresh ago, gets that scan's
// Service copied and is not probed; new ports, ports without a remembered
// detection and ports whose detection is older than refresh are probed.
//
// The times live in memory only (snapshot.Service has no timestamp, and
// the store keeps none per port): after a restart every open port is
// probed once, which is the safe side. The cost is one map entry per open
// port with a service.

// svKey names one port of one host.
type svKey struct {
	addr  string
	port  uint16
	proto string
}

// svDetections holds the detection times of every target, for the
// daemon's lifetime. Safe for concurrent jobs.
type svDetections struct {
	mu sync.Mutex
	m  map[string]map[svKey]time.Time
}

func newSVDetections() *svDetections {
	return &svDetections{m: map[string]map[svKey]time.Time{}}
}

// svReuse is one job's reuse plan: the services to copy, by port, and
// their detection times.
type svReuse struct {
	keep map[svKey]reused
}

type reused struct {
	svc *snapshot.Service
	at  time.Time
}

// plan picks the services of prev (the previous complete snapshot; nil
// for none) detected less than refresh before now. Nil when there is
// nothing to reuse.
func (d *svDetections) plan(target string, prev *snapshot.Snapshot, now time.Time, refresh time.Duration) *svReuse {
	if prev == nil || !prev.Complete || refresh <= 0 {
		return nil
	}
	d.mu.Lock()
	times := d.m[target]
	d.mu.Unlock()
	if len(times) == 0 {
		return nil
	}
	keep := map[svKey]reused{}
	for _, h := range prev.Hosts {
		for _, p := range h.Ports {
			if p.State != snapshot.StateOpen || p.Service == nil {
				continue
			}
			k := svKey{h.Address, p.Port, p.Protocol}
			at, ok := times[k]
			if !ok || now.Sub(at) >= refresh {
				continue
			}
			keep[k] = reused{p.Service, at}
		}
	}
	if len(keep) == 0 {
		return nil
	}
	return &svReuse{keep: keep}
}

// apply copies the kept services onto the ports of snap still open with
// the same protocol.
func (r *svReuse) apply(snap *snapshot.Snapshot) {
	for hi := range snap.Hosts {
		h := &snap.Hosts[hi]
		for pi := range h.Ports {
			p := &h.Ports[pi]
			if p.State != snapshot.StateOpen || p.Service != nil {
				continue
			}
			if k, ok := r.keep[svKey{h.Address, p.Port, p.Protocol}]; ok {
				p.Service = k.svc
			}
		}
	}
}

// record replaces the target's detection times from a complete snapshot:
// a service copied by r keeps its time, any other one was detected in
// this scan, started at now. Ports without a service are forgotten.
func (d *svDetections) record(target string, snap *snapshot.Snapshot, r *svReuse, now time.Time) {
	times := map[svKey]time.Time{}
	for _, h := range snap.Hosts {
		for _, p := range h.Ports {
			if p.State != snapshot.StateOpen || p.Service == nil {
				continue
			}
			k := svKey{h.Address, p.Port, p.Protocol}
			at := now
			if r != nil {
				if kept, ok := r.keep[k]; ok && kept.svc == p.Service {
					at = kept.at
				}
			}
			times[k] = at
		}
	}
	d.mu.Lock()
	d.m[target] = times
	d.mu.Unlock()
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
