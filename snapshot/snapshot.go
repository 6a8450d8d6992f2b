// Package snapshot is the data model every other package shares: one scan of
// one target (Snapshot), its hosts, ports and services, and the typed changes
// between two snapshots. Its JSON shape is a contract (see docs/architecture.md); it
// imports nothing of ours.
package snapshot

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// Port states.
const (
	StateOpen     = "open"
	StateClosed   = "closed"
	StateFiltered = "filtered"
	// StateOpenFiltered is a UDP port that answered nothing, as nmap -sU
	// says: open or filtered, nobody can tell.
	StateOpenFiltered = "open|filtered"
)

// Host states.
const (
	HostUp   = "up"
	HostDown = "down"
)

// Snapshot is one scan of one target.
type Snapshot struct {
	Target     string    `json:"target"`
	ID         string    `json:"id"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// Complete is false when the scan was cut short. An incomplete snapshot
	// is stored but never diffed as "everything closed".
	Complete bool    `json:"complete"`
	Quality  Quality `json:"quality"`
	Hosts    []Host  `json:"hosts"`
}

// Quality holds the engine's figures for one scan. Closed ports are counted
// here rather than listed.
type Quality struct {
	ProbesSent  uint64 `json:"probes_sent"`
	Replies     uint64 `json:"replies"`
	Retransmits uint64 `json:"retransmits"`
	Closed      uint64 `json:"closed,omitempty"`
	Filtered    uint64 `json:"filtered,omitempty"`
}

// Host is one address of a target.
type Host struct {
	Address  string `json:"address"`
	Hostname string `json:"hostname,omitempty"`
	State    string `json:"state"`
	Ports    []Port `json:"ports"`
	// Unlisted counts the ports of the host that were scanned and are not
	// in Ports, by protocol and state: nmap's extraports. A small sweep
	// lists every port but the closed ones, a large one only the open
	// ones (see scanner.SmallScanPairs).
	Unlisted Unlisted `json:"unlisted,omitzero"`
}

// Unlisted is the count of a host's scanned ports not listed, per
// protocol and state. It is a fixed set of counters rather than a map so
// that a host of a large estate costs a few bytes for it.
type Unlisted struct {
	TCPClosed       uint32 `json:"tcp_closed,omitempty"`
	TCPFiltered     uint32 `json:"tcp_filtered,omitempty"`
	UDPClosed       uint32 `json:"udp_closed,omitempty"`
	UDPFiltered     uint32 `json:"udp_filtered,omitempty"`
	UDPOpenFiltered uint32 `json:"udp_open_filtered,omitempty"`
}

// counter is the field of u for (protocol, state), nil for a pair that
// is always listed (open) or unknown.
func (u *Unlisted) counter(proto, state string) *uint32 {
	switch proto + "/" + state {
	case "tcp/" + StateClosed:
		return &u.TCPClosed
	case "tcp/" + StateFiltered:
		return &u.TCPFiltered
	case "udp/" + StateClosed:
		return &u.UDPClosed
	case "udp/" + StateFiltered:
		return &u.UDPFiltered
	case "udp/" + StateOpenFiltered:
		return &u.UDPOpenFiltered
	}
	return nil
}

// Add counts n more unlisted ports of protocol proto in state; it
// reports false for a pair that is never unlisted.
func (u *Unlisted) Add(proto, state string, n uint32) bool {
	c := u.counter(proto, state)
	if c == nil {
		return false
	}
	*c += n
	return true
}

// Count is the number of unlisted ports of protocol proto in state.
func (u Unlisted) Count(proto, state string) uint32 {
	if c := u.counter(proto, state); c != nil {
		return *c
	}
	return 0
}

// Merge adds the counts of v to u.
func (u *Unlisted) Merge(v Unlisted) {
	u.TCPClosed += v.TCPClosed
	u.TCPFiltered += v.TCPFiltered
	u.UDPClosed += v.UDPClosed
	u.UDPFiltered += v.UDPFiltered
	u.UDPOpenFiltered += v.UDPOpenFiltered
}

// UnlistedStates are the states a port of protocol proto can be unlisted
// in, in the order nmap prints extraports.
func UnlistedStates(proto string) []string {
	if proto == "udp" {
		return []string{StateClosed, StateOpenFiltered, StateFiltered}
	}
	return []string{StateClosed, StateFiltered}
}

// Port is one (port, protocol) of a host.
type Port struct {
	Port     uint16   `json:"port"`
	Protocol string   `json:"protocol"`
	State    string   `json:"state"`
	Service  *Service `json:"service,omitempty"`
}

// Service is what service and version detection found on a port.
type Service struct {
	Name    string   `json:"name"`
	Product string   `json:"product"`
	Version string   `json:"version"`
	Info    string   `json:"info"`
	Tunnel  string   `json:"tunnel"`
	CPE     []string `json:"cpe"`
	// Cert is set when the service spoke TLS.
	Cert *Cert `json:"cert,omitempty"`
	// Incomplete is set when detection ran out of time while a probe
	// that could have told more (a match, a version) was still
	// outstanding: the result may say less than the service would.
	Incomplete bool `json:"incomplete,omitempty"`
	// Fingerprint, set only when nothing named the service, holds the
	// first bytes that answered: the probe's name, a colon, then the reply
	// (at most 256 bytes) with non-printable bytes escaped as \r, \n, \t,
	// \0 or \xHH, so a user can see what is listening.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// MarshalJSON writes "cpe" as [] when there are none, as the detector
// does, so that a service reads the same in a snapshot and in the before
// and after of a change whatever built it.
func (s Service) MarshalJSON() ([]byte, error) {
	type plain Service
	if s.CPE == nil {
		s.CPE = []string{}
	}
	return json.Marshal(plain(s))
}

// FullName is the service name as nmap's SERVICE column shows it: with the
// tunnel ("ssl/imap") and "?" when detection ran out of time; "" without a
// name.
func (s *Service) FullName() string {
	name := s.Name
	if name != "" && s.Tunnel != "" {
		name = s.Tunnel + "/" + name
	}
	if name != "" && s.Incomplete {
		name += "?"
	}
	return name
}

// Describe says what runs on a port the way nmap's -sV column does:
// "ssl/http nginx 1.22.1 (Debian)", with "?" after the name when detection
// ran out of time; "" for a nil or empty Service. The fields come from the
// network: they were cleaned by the detector, and callers that print them
// elsewhere bound them again.
func (s *Service) Describe() string {
	if s == nil {
		return ""
	}
	var fields []string
	for _, f := range []string{s.FullName(), s.Product, s.Version} {
		if f != "" {
			fields = append(fields, f)
		}
	}
	out := strings.Join(fields, " ")
	if s.Info != "" {
		out = strings.TrimSpace(out + " (" + s.Info + ")")
	}
	return out
}

// Cert holds the facts of a TLS leaf certificate that users track as drift.
type Cert struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	SANs        []string  `json:"sans,omitempty"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Fingerprint string    `json:"sha256"`
}

// Equal reports whether s and o say the same, field by field (a nil CPE
// list and an empty one apart, as their encodings are); two nil services
// are equal.
func (s *Service) Equal(o *Service) bool {
	if s == nil || o == nil {
		return s == o
	}
	if s.Name != o.Name || s.Product != o.Product || s.Version != o.Version || s.Info != o.Info ||
		s.Tunnel != o.Tunnel || s.Incomplete != o.Incomplete || s.Fingerprint != o.Fingerprint ||
		(s.CPE == nil) != (o.CPE == nil) || !slices.Equal(s.CPE, o.CPE) {
		return false
	}
	return s.Cert.equal(o.Cert)
}

func (c *Cert) equal(o *Cert) bool {
	if c == nil || o == nil {
		return c == o
	}
	return c.Subject == o.Subject && c.Issuer == o.Issuer && c.Fingerprint == o.Fingerprint &&
		c.NotBefore.Equal(o.NotBefore) && c.NotAfter.Equal(o.NotAfter) &&
		(c.SANs == nil) == (o.SANs == nil) && slices.Equal(c.SANs, o.SANs)
}

// NewID returns the snapshot id of docs/architecture.md: target/unix-nanos.
func NewID(target string, started time.Time) string {
	return fmt.Sprintf("%s/%d", target, started.UnixNano())
}

// Sort puts hosts in address order and ports in port order, so that two
// snapshots of the same network compare and serialise identically.
func (s *Snapshot) Sort() {
	sort.Slice(s.Hosts, func(i, j int) bool { return addrLess(s.Hosts[i].Address, s.Hosts[j].Address) })
	for i := range s.Hosts {
		p := s.Hosts[i].Ports
		sort.Slice(p, func(a, b int) bool {
			if p[a].Port != p[b].Port {
				return p[a].Port < p[b].Port
			}
			return p[a].Protocol < p[b].Protocol
		})
	}
}

func addrLess(a, b string) bool {
	x, errx := netip.ParseAddr(a)
	y, erry := netip.ParseAddr(b)
	if errx == nil && erry == nil {
		return x.Less(y)
	}
	return strings.Compare(a, b) < 0
}

// OpenPorts counts the open ports across all hosts.
func (s *Snapshot) OpenPorts() int {
	n := 0
	s.EachOpenPort(func(*Host, *Port) { n++ })
	return n
}

// EachOpenPort calls f with every open port of s and its host, in order.
func (s *Snapshot) EachOpenPort(f func(*Host, *Port)) {
	for i := range s.Hosts {
		h := &s.Hosts[i]
		for j := range h.Ports {
			if h.Ports[j].State == StateOpen {
				f(h, &h.Ports[j])
			}
		}
	}
}

// HostsUp counts the hosts in state up.
func (s *Snapshot) HostsUp() int {
	n := 0
	for _, h := range s.Hosts {
		if h.State == HostUp {
			n++
		}
	}
	return n
}

// ServicePool hands out one Service value per distinct service: a large
// estate runs the same few products on most of its ports (98,304 ports of
// nginx and OpenSSH in the scale lab), so a Service per port costs memory
// and encoding work in proportion to the estate where its distinct values
// are a handful. Services are read-only once detected: nothing may modify
// a Service of a snapshot after it was shared. The zero value is ready to
// use; it is not safe for concurrent use.
type ServicePool struct {
	m   map[string]*Service
	key strings.Builder
}

// Share returns the pool's Service equal to sv, adding sv when there is
// none; nil and a service with a certificate (each its own) are returned
// as they are.
func (p *ServicePool) Share(sv *Service) *Service {
	if sv == nil || sv.Cert != nil {
		return sv
	}
	p.key.Reset()
	for _, f := range []string{sv.Name, sv.Product, sv.Version, sv.Info, sv.Tunnel, sv.Fingerprint} {
		p.key.WriteString(f)
		p.key.WriteByte(0)
	}
	for _, c := range sv.CPE {
		p.key.WriteString(c)
		p.key.WriteByte(1)
	}
	if sv.CPE == nil {
		p.key.WriteByte(2) // nil and empty CPE lists are kept apart
	}
	if sv.Incomplete {
		p.key.WriteByte(3)
	}
	if shared, ok := p.m[p.key.String()]; ok {
		return shared
	}
	if p.m == nil {
		p.m = map[string]*Service{}
	}
	p.m[p.key.String()] = sv
	return sv
}

// Len is the number of distinct services in the pool.
func (p *ServicePool) Len() int { return len(p.m) }

// ShareServices makes the ports of s whose services are equal share one
// Service value (ServicePool), and returns how many distinct services
// without a certificate there are.
func (s *Snapshot) ShareServices() int {
	var pool ServicePool
	for hi := range s.Hosts {
		for pi := range s.Hosts[hi].Ports {
			p := &s.Hosts[hi].Ports[pi]
			p.Service = pool.Share(p.Service)
		}
	}
	return pool.Len()
}
