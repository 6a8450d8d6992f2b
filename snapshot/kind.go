package snapshot

import "fmt"

// ScanFailing is the kind of the condition the daemon raises while a
// target's scans fail. No snapshot reveals it, so no diff commits it.
const ScanFailing Kind = "scan_failing"

// Severity ranks a change kind for routing. The zero value is no severity:
// every kind has one (TestEveryKindHasSeverityAndAlertName), and a route
// minimum of zero admits everything.
type Severity int

// Severities, lowest first.
const (
	SeverityInfo Severity = iota + 1
	SeverityWarning
	SeverityCritical
)

var severityNames = [...]string{SeverityInfo: "info", SeverityWarning: "warning", SeverityCritical: "critical"}

func (s Severity) String() string {
	if s >= SeverityInfo && s <= SeverityCritical {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// Severities returns the severity names, lowest first.
func Severities() []string { return append([]string(nil), severityNames[SeverityInfo:]...) }

// ParseSeverity parses a severity name; "" is info.
func ParseSeverity(s string) (Severity, error) {
	if s == "" {
		return SeverityInfo, nil
	}
	for i := SeverityInfo; i <= SeverityCritical; i++ {
		if severityNames[i] == s {
			return i, nil
		}
	}
	return 0, fmt.Errorf("parse severity %q: want info, warning or critical", s)
}

// KindInfo is what every package needs to know about one change kind.
type KindInfo struct {
	Kind Kind
	// AlertName is the Alertmanager alertname of the kind's alerts.
	AlertName string
	Severity  Severity
	// Condition kinds fire while they hold and are resolved when they stop;
	// the others are events with a bounded lifetime.
	Condition bool
	// Daemon kinds are raised by the daemon, not committed by a diff.
	Daemon bool
}

// kinds is the one list of change kinds (host-level, port-level, then the policy verdicts). A forbidden port open is a
// firewall regression and the only critical kind; broken expectations and
// unreachable hosts are warnings; plain drift (ports, services, versions,
// certificates) is information.
var kinds = [...]KindInfo{
	{Kind: HostUpKind, AlertName: "ExposureHostUp", Severity: SeverityInfo},
	{Kind: HostDownKind, AlertName: "ExposureHostDown", Severity: SeverityWarning, Condition: true},
	{Kind: PortOpened, AlertName: "ExposurePortOpened", Severity: SeverityInfo},
	{Kind: PortClosed, AlertName: "ExposurePortClosed", Severity: SeverityInfo},
	{Kind: ServiceChanged, AlertName: "ExposureServiceVersionChanged", Severity: SeverityInfo},
	{Kind: VersionChanged, AlertName: "ExposureServiceVersionChanged", Severity: SeverityInfo},
	{Kind: CertChanged, AlertName: "ExposureCertChanged", Severity: SeverityInfo},
	{Kind: AllPortsOpen, AlertName: "ExposureAllPortsOpen", Severity: SeverityWarning},
	{Kind: UnexpectedOpen, AlertName: "ExposureUnexpectedPort", Severity: SeverityWarning, Condition: true},
	{Kind: ForbiddenOpen, AlertName: "ExposureForbiddenPort", Severity: SeverityCritical, Condition: true},
	{Kind: ExpectedMissing, AlertName: "ExposureExpectedPortMissing", Severity: SeverityWarning, Condition: true},
	{Kind: VersionPolicy, AlertName: "ExposureVersionPolicy", Severity: SeverityWarning, Condition: true},
	{Kind: ScanFailing, AlertName: "ExposureScanFailing", Severity: SeverityWarning, Condition: true, Daemon: true},
}

// Kinds returns every change kind, scan_failing included, with what is
// known about it.
func Kinds() []KindInfo { return append([]KindInfo(nil), kinds[:]...) }

// Info returns what is known about k; ok is false for an unknown kind.
func (k Kind) Info() (info KindInfo, ok bool) {
	for _, i := range kinds {
		if i.Kind == k {
			return i, true
		}
	}
	return KindInfo{Kind: k}, false
}

// Known reports whether k is a kind of this list.
func (k Kind) Known() bool {
	_, ok := k.Info()
	return ok
}

// Severity returns the severity of k. Unknown kinds are warnings, so that a
// kind added later is not silently filtered out by a min_severity: warning
// route.
func (k Kind) Severity() Severity {
	if i, ok := k.Info(); ok {
		return i.Severity
	}
	return SeverityWarning
}

// AlertName returns the alertname of k, "ExposureChange" for an unknown kind.
func (k Kind) AlertName() string {
	if i, ok := k.Info(); ok {
		return i.AlertName
	}
	return "ExposureChange"
}

// Condition reports whether alerts of kind k fire while they hold.
func (k Kind) Condition() bool {
	i, _ := k.Info()
	return i.Condition
}
