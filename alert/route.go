package alert

import (
	"fmt"
	"slices"

	"github.com/exposure-monitor/exposure/snapshot"
)

// Route selects what a receiver gets. Empty lists match everything.
type Route struct {
	// Targets are target names.
	Targets []string
	// Kinds are change kinds (snapshot.Kind values and snapshot.ScanFailing).
	Kinds []snapshot.Kind
	// MinSeverity drops anything less severe.
	MinSeverity snapshot.Severity
}

// NewRoute builds a Route from configuration strings ("" severity is info)
// and validates it.
func NewRoute(targets, kinds []string, minSeverity string) (Route, error) {
	sev, err := ParseSeverity(minSeverity)
	if err != nil {
		return Route{}, fmt.Errorf("route min_severity: %w", err)
	}
	r := Route{Targets: slices.Clone(targets), MinSeverity: sev}
	for _, k := range kinds {
		r.Kinds = append(r.Kinds, snapshot.Kind(k))
	}
	if err := r.Validate(); err != nil {
		return Route{}, err
	}
	return r, nil
}

// Validate checks the kinds and the severity.
func (r Route) Validate() error {
	for _, k := range r.Kinds {
		if !KnownKind(k) {
			return fmt.Errorf("route kinds: unknown kind %q", k)
		}
	}
	if r.MinSeverity < 0 || r.MinSeverity > snapshot.SeverityCritical {
		return fmt.Errorf("route min_severity: invalid severity %d", int(r.MinSeverity))
	}
	return nil
}

// Match reports whether a change of kind k on target goes to the receiver.
func (r Route) Match(target string, k snapshot.Kind) bool {
	if len(r.Targets) > 0 && !slices.Contains(r.Targets, target) {
		return false
	}
	if len(r.Kinds) > 0 && !slices.Contains(r.Kinds, k) {
		return false
	}
	return SeverityOf(k) >= r.MinSeverity
}
