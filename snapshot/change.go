package snapshot

import "time"

// Kind is the type of a Change.
type Kind string

// Change kinds (docs/architecture.md). The last four are policy verdicts.
const (
	HostUpKind      Kind = "host_up"
	HostDownKind    Kind = "host_down"
	PortOpened      Kind = "port_opened"
	PortClosed      Kind = "port_closed"
	ServiceChanged  Kind = "service_changed"
	VersionChanged  Kind = "version_changed"
	CertChanged     Kind = "cert_changed"
	AllPortsOpen    Kind = "all_ports_open"
	UnexpectedOpen  Kind = "unexpected_open"
	ForbiddenOpen   Kind = "forbidden_open"
	ExpectedMissing Kind = "expected_missing"
	VersionPolicy   Kind = "version_policy"
)

// Change is one typed difference between two snapshots of the same target.
// Host-level kinds leave Port and Protocol empty.
type Change struct {
	Kind      Kind      `json:"kind"`
	Target    string    `json:"target"`
	Address   string    `json:"address"`
	Port      uint16    `json:"port,omitempty"`
	Protocol  string    `json:"protocol,omitempty"`
	At        time.Time `json:"at"`
	Before    *Port     `json:"before,omitempty"`
	After     *Port     `json:"after,omitempty"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
	// Snapshot is the id of the snapshot that revealed the change; Previous
	// the one it was compared against.
	Snapshot string `json:"snapshot"`
	Previous string `json:"previous,omitempty"`
	// Detail is a short human explanation, e.g. the broken version rule.
	Detail string `json:"detail,omitempty"`
	// Flaps counts open/closed alternations folded into this change.
	Flaps int `json:"flaps,omitempty"`
}
