package monitor

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/exposure-monitor/exposure/alert"
	"github.com/exposure-monitor/exposure/config"
)

// runtimeConfig is a configuration with everything built from it that can
// fail: notifiers, engines, service detectors. A reload builds a complete
// runtimeConfig before anything is swapped, so a bad file changes nothing.
type runtimeConfig struct {
	cfg     *config.Config
	targets []*config.Target // the targets this shard owns, in file order
	byName  map[string]*config.Target

	receivers     []alert.Receiver
	notifiers     map[string]alert.Notifier
	receiversKey  string
	eventLifetime time.Duration

	scan   scanFunc
	differ differ
}

// scannerBuilder builds the scanning side of a configuration: wire.go
// backs it with the scanner, service and diff packages.
type scannerBuilder func(cfg *config.Config) (scanFunc, differ, error)

func buildRuntime(cfg *config.Config, logger *slog.Logger, scanners scannerBuilder) (*runtimeConfig, error) {
	rc := &runtimeConfig{
		cfg:           cfg,
		targets:       cfg.OwnedTargets(),
		byName:        map[string]*config.Target{},
		notifiers:     map[string]alert.Notifier{},
		receiversKey:  receiversKey(cfg),
		eventLifetime: alert.DefaultEventLifetime,
	}
	for _, t := range rc.targets {
		rc.byName[t.Name] = t
	}
	var err error
	if rc.receivers, rc.notifiers, err = alert.Build(cfg.Receivers, logger); err != nil {
		return nil, err
	}
	if rc.scan, rc.differ, err = scanners(cfg); err != nil {
		return nil, err
	}
	return rc, nil
}

// receiversKey changes when anything about the receivers changes; the
// dispatcher is rebuilt only then.
func receiversKey(cfg *config.Config) string {
	c := &config.Config{Receivers: cfg.Receivers}
	return c.String()
}

// planFor returns the alerting side of one target: its receivers (all, or
// those the target names) and how long its conditions stay valid.
func (rc *runtimeConfig) planFor(t *config.Target, generatorURL string, now time.Time) planInfo {
	pi := planInfo{eventLifetime: rc.eventLifetime, generatorURL: generatorURL}
	for _, r := range rc.receivers {
		if len(t.Receivers) == 0 || slices.Contains(t.Receivers, r.Name) {
			pi.receivers = append(pi.receivers, r)
		}
	}
	pi.validity = alert.DefaultValidity
	if t.Sched != nil {
		next := t.Sched.Next(now)
		if interval := t.Sched.Next(next).Sub(next); interval > 0 {
			pi.validity = alert.Validity(interval)
		}
	}
	return pi
}

// scheduleKey changes when a target must be rescheduled. Everything else
// about a target is read from the current configuration at each run.
func scheduleKey(t *config.Target, g config.Global) string {
	return fmt.Sprintf("%s|%s|%s|%t", t.Schedule, time.Duration(t.Timeout), time.Duration(g.Jitter), g.RunAtStart)
}
