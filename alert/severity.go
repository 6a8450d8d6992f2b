package alert

import (
	"fmt"

	"github.com/exposure-monitor/exposure/snapshot"
)

// ScanFailing is the kind of the condition the daemon adds while a target's
// scans fail. It is not a snapshot change kind: no snapshot reveals it.
const ScanFailing snapshot.Kind = "scan_failing"

// Severity orders alerts for routing. The zero value is SeverityInfo.
type Severity int

// Severities, lowest first.
const (
	SeverityInfo Severity = iota
	SeverityWarning
	SeverityCritical
)

func (s Severity) String() string {
	switch s {
	case SeverityInfo:
		return "info"
	case SeverityWarning:
		return "warning"
	case SeverityCritical:
		return "critical"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// ParseSeverity parses "info", "warning" or "critical"; "" is info.
func ParseSeverity(s string) (Severity, error) {
	switch s {
	case "", "info":
		return SeverityInfo, nil
	case "warning":
		return SeverityWarning, nil
	case "critical":
		return SeverityCritical, nil
	}
	return 0, fmt.Errorf("parse severity %q: want info, warning or critical", s)
}

// kindInfo is what the package knows about one change kind.
type kindInfo struct {
	alertname string
	severity  Severity
	// condition kinds fire while they hold and are resolved when they stop;
	// the others are events with a bounded lifetime.
	condition bool
}

// kinds maps every change kind to its alert. A forbidden port open is a
// firewall regression and the only critical kind; broken expectations and
// unreachable hosts are warnings; plain drift (ports, services, versions,
// certificates) is information.
var kinds = map[snapshot.Kind]kindInfo{
	snapshot.ForbiddenOpen:   {"ExposureForbiddenPort", SeverityCritical, true},
	snapshot.UnexpectedOpen:  {"ExposureUnexpectedPort", SeverityWarning, true},
	snapshot.ExpectedMissing: {"ExposureExpectedPortMissing", SeverityWarning, true},
	snapshot.VersionPolicy:   {"ExposureVersionPolicy", SeverityWarning, true},
	snapshot.HostDownKind:    {"ExposureHostDown", SeverityWarning, true},
	ScanFailing:              {"ExposureScanFailing", SeverityWarning, true},
	snapshot.AllPortsOpen:    {"ExposureAllPortsOpen", SeverityWarning, false},
	snapshot.PortOpened:      {"ExposurePortOpened", SeverityInfo, false},
	snapshot.PortClosed:      {"ExposurePortClosed", SeverityInfo, false},
	snapshot.ServiceChanged:  {"ExposureServiceVersionChanged", SeverityInfo, false},
	snapshot.VersionChanged:  {"ExposureServiceVersionChanged", SeverityInfo, false},
	snapshot.CertChanged:     {"ExposureCertChanged", SeverityInfo, false},
	snapshot.HostUpKind:      {"ExposureHostUp", SeverityInfo, false},
}

// SeverityOf returns the severity of a change kind. Unknown kinds are
// warnings, so that a kind added to the diff later is not silently filtered
// out by a min_severity: warning route.
func SeverityOf(k snapshot.Kind) Severity {
	if ki, ok := kinds[k]; ok {
		return ki.severity
	}
	return SeverityWarning
}

// AlertName returns the Alertmanager alertname of a change kind.
func AlertName(k snapshot.Kind) string {
	if ki, ok := kinds[k]; ok {
		return ki.alertname
	}
	return "ExposureChange"
}

// IsCondition reports whether alerts of kind k fire while they hold (rather
// than being one-off events).
func IsCondition(k snapshot.Kind) bool { return kinds[k].condition }

// KnownKind reports whether k is a kind this package routes.
func KnownKind(k snapshot.Kind) bool {
	_, ok := kinds[k]
	return ok
}
