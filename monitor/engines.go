package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

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

// annotator fills in the services of the open ports of a snapshot
// (service.Detector).
type annotator interface {
	Annotate(ctx context.Context, s *snapshot.Snapshot)
}

// sweepTarget is the scanning half of a job: the sweep with the target's
// engine (bound by bind, which binds the sweep's DNS too), then service
// detection on the open ports when enabled. A detection cut short by ctx
// leaves the snapshot incomplete.
func sweepTarget(ctx context.Context, e scanner.Engine, bind *netif.Binding, det annotator, t *config.Target) (*snapshot.Snapshot, error) {
	snap, err := scanner.Sweep(ctx, e, t.TargetSpec, scanner.SweepOptions{
		Target: t.Name, Ports: t.PortSpec, Retries: t.Retries, ReverseDNS: t.ReverseDNS, Bind: bind,
	})
	if err != nil {
		return snap, fmt.Errorf("sweep: %w", err)
	}
	if snap.Complete && det != nil && snap.OpenPorts() > 0 {
		det.Annotate(ctx, snap)
		if ctx.Err() != nil {
			snap.Complete = false
		}
	}
	return snap, nil
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
