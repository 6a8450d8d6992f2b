package alert

import "github.com/exposure-monitor/exposure/snapshot"

// The kinds, their alertnames, severities and sorts are snapshot's kinds
// table (snapshot.Kinds); these helpers read it.

// SeverityOf returns the severity of a change kind (warning if unknown).
func SeverityOf(k snapshot.Kind) snapshot.Severity { return k.Severity() }

// AlertName returns the Alertmanager alertname of a change kind.
func AlertName(k snapshot.Kind) string { return k.AlertName() }

// IsCondition reports whether alerts of kind k fire while they hold (rather
// than being one-off events).
func IsCondition(k snapshot.Kind) bool { return k.Condition() }

// KnownKind reports whether k is a kind this package routes.
func KnownKind(k snapshot.Kind) bool { return k.Known() }

// ParseSeverity parses "info", "warning" or "critical"; "" is info.
func ParseSeverity(s string) (snapshot.Severity, error) { return snapshot.ParseSeverity(s) }
