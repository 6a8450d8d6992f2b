package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/diff"
	"github.com/exposure-monitor/exposure/scanner"
	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/scanner/service"
	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// realScanners backs a configuration with the scanner and diff packages:
// every engine its targets name is created (and checked) here, so a reload
// asking for an engine this process cannot run fails before the swap. The
// configuration's global.interface becomes one binding here, which the
// engines, the sweeps' DNS, service detection and the re-probes share.
func (d *daemonState) realScanners(cfg *config.Config) (scanFunc, differ, error) {
	if d.engines == nil {
		d.engines = newEngineSet(d.limiter, d.logger)
	}
	// The interface need not exist yet: scans fail while it is missing.
	bind, err := netif.New(cfg.Global.Interface)
	if err != nil {
		return nil, nil, fmt.Errorf("global.interface: %w", err)
	}
	for _, t := range cfg.OwnedTargets() {
		// The target's engine even without TCP ports: a later reload may
		// add some, and engine names a kind this process must run.
		if _, err := d.engines.get(t.Engine, bind); err != nil {
			return nil, nil, fmt.Errorf("target %q: %w", t.Name, err)
		}
		if _, err := d.engines.forTarget(t, bind); err != nil {
			return nil, nil, fmt.Errorf("target %q: UDP ports: %w", t.Name, err)
		}
	}
	detectors := map[string]*service.Detector{}
	for _, t := range cfg.OwnedTargets() {
		sd := t.ServiceDetection
		if !sd.Enabled {
			continue
		}
		key := detectorKey(sd, bind)
		if _, ok := detectors[key]; ok {
			continue
		}
		det, err := d.detector(key, sd, bind)
		if err != nil {
			return nil, nil, fmt.Errorf("target %q: service detection: %w", t.Name, err)
		}
		detectors[key] = det
	}
	engines := d.engines
	scan := func(ctx context.Context, t *config.Target) (*snapshot.Snapshot, error) {
		e, err := engines.forTarget(t, bind)
		if err != nil {
			return nil, err
		}
		var det annotator
		if t.ServiceDetection.Enabled {
			if dt := detectors[detectorKey(t.ServiceDetection, bind)]; dt != nil {
				det = dt
			}
		}
		return sweepTarget(ctx, e, bind, det, t)
	}
	return scan, diffWithConfirm{engines: engines, bind: bind}, nil
}

func detectorKey(sd config.ServiceDetection, bind *netif.Binding) string {
	return fmt.Sprintf("%d|%s|%s|%s", sd.Intensity, time.Duration(sd.Timeout), bind.Name(), strings.Join(sd.ProbeFiles, "\x00"))
}

// detector returns a service detector for sd. Detectors on the embedded
// probe database alone are kept for the daemon's lifetime (parsing it is the
// costly part); with operator probe files they are built again at every
// reload, so edited files are read.
func (d *daemonState) detector(key string, sd config.ServiceDetection, bind *netif.Binding) (*service.Detector, error) {
	if len(sd.ProbeFiles) == 0 {
		if det, ok := d.detectors[key]; ok {
			return det, nil
		}
	}
	o := serviceOptions(sd, d.logger)
	// global.interface binds -sV connections like the scan's probes.
	o.Bind = bind
	det, err := service.New(o)
	if err != nil {
		return nil, err
	}
	if len(sd.ProbeFiles) == 0 {
		if d.detectors == nil {
			d.detectors = map[string]*service.Detector{}
		}
		d.detectors[key] = det
	}
	return det, nil
}

// serviceOptions maps a target's service_detection onto the detector's
// options.
func serviceOptions(sd config.ServiceDetection, logger *slog.Logger) service.Options {
	return service.Options{
		Intensity:  sd.Intensity,
		Timeout:    time.Duration(sd.Timeout),
		ProbeFiles: slices.Clone(sd.ProbeFiles),
		Logger:     logger.With("component", "service"),
	}
}

// diffWithConfirm is the real differ: diff.Diff against the stored state,
// then diff.Confirm re-probing exactly the pending ports with the target's
// engine, and diff.Evaluate for the conditions that hold now.
type diffWithConfirm struct {
	engines *engineSet
	// bind is the scans' binding: re-probes go through global.interface
	// like the scan did.
	bind *netif.Binding
}

func policyOf(t *config.Target, g config.Global) diff.Policy {
	return diff.Policy{
		Open:          t.Expect.Open,
		ExpectOpenSet: t.Expect.OpenSet,
		NeverOpen:     t.Expect.NeverOpen,
		Versions:      t.Expect.Versions,
		AllOpenShare:  g.AllOpenShare,
		PortsProbed:   t.PortSpec.Len(),
		FlapWindow:    time.Duration(g.Flap.Window),
		FlapThreshold: g.Flap.Threshold,
	}
}

func (w diffWithConfirm) diff(ctx context.Context, prev, cur *snapshot.Snapshot, state json.RawMessage, t *config.Target, g config.Global) (diffResult, error) {
	st, err := diff.UnmarshalState(state)
	if err != nil {
		// A state from another version: rebuild it from prev (diff seeds a
		// fresh state from the previous complete scan, reporting nothing).
		st = nil
	}
	p := policyOf(t, g)
	res := diff.DiffOwned(prev, cur, st, p) // st is this call's own
	changes := res.Changes
	if len(res.Pending) > 0 {
		e, err := w.engines.forTarget(t, w.bind)
		if err != nil {
			return diffResult{}, err
		}
		// A pending port of a protocol the target no longer scans (its
		// ports were edited) is re-probed all the same, like a TCP port
		// dropped from the spec.
		for _, pd := range res.Pending {
			switch {
			case pd.Protocol == spec.ProtoUDP && e.UDP == nil:
				e.UDP, err = w.engines.get(scanner.KindUDP, w.bind)
			case pd.Protocol != spec.ProtoUDP && e.TCP == nil:
				e.TCP, err = w.engines.get(t.Engine, w.bind)
			}
			if err != nil {
				return diffResult{}, err
			}
		}
		// global.confirm: N agreeing re-probes out of at most M rounds,
		// each port over its own protocol.
		confirmed, err := diff.Confirm(ctx, engineProber{engines: e, retries: t.Retries}, res.Pending, g.Confirm.N, g.Confirm.M)
		if err != nil {
			return diffResult{}, err
		}
		changes = append(changes, confirmed...)
	}
	raw, err := res.State.MarshalBinary()
	if err != nil {
		return diffResult{}, fmt.Errorf("encode diff state: %w", err)
	}
	for i := range changes {
		if changes[i].Target == "" {
			changes[i].Target = cur.Target
		}
	}
	return diffResult{Changes: changes, Conditions: diff.Evaluate(cur, p), State: raw}, nil
}
