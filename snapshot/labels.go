package snapshot

import "slices"

// reservedLabels are the label names exposure sets itself on alerts
// (alertname ... severity) and on metric series (service, product, version,
// kind), plus the ones Prometheus adds at scrape (instance, job). A
// target's own labels may not use them.
var reservedLabels = [...]string{"alertname", "target", "address", "port", "protocol", "severity",
	"service", "product", "version", "kind", "instance", "job"}

// ReservedLabel reports whether name is a label name exposure reserves.
func ReservedLabel(name string) bool { return slices.Contains(reservedLabels[:], name) }

// ReservedLabels returns the reserved label names.
func ReservedLabels() []string { return slices.Clone(reservedLabels[:]) }
