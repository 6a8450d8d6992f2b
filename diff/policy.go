package diff

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// Policy is a target's expectations (config expect:) and the diff's guards.
type Policy struct {
	// Open lists the ports that may be open; with ExpectOpenSet, any other
	// open port is unexpected_open, and a port of Open that is open on no
	// up host of the target is expected_missing (one verdict per port, not
	// per host, so an allow-list over a subnet does not cry wolf). Each
	// entry names its protocol: 22/tcp allows nothing on 22/udp.
	Open []spec.ProtoPort
	// ExpectOpenSet says Open was configured (an empty Open then means
	// nothing may be open).
	ExpectOpenSet bool
	// NeverOpen lists ports that must never be open: forbidden_open.
	NeverOpen []spec.ProtoPort
	// Versions maps a port to a rule (see ParseRule) its service version
	// must satisfy: version_policy. Invalid rules are ignored here; config
	// validation rejects them with ParseRule.
	Versions map[spec.ProtoPort]string
	// AllOpenShare: a host where more than this share of the probed ports
	// answer open is reported once as all_ports_open (a SYN proxy or
	// tarpit) and its ports are not diffed. Zero means 0.5.
	AllOpenShare float64
	// PortsProbed is the number of ports probed per host (the length of the
	// target's port spec). Zero estimates it from the snapshot's quality
	// figures; without figures all_ports_open is not detected.
	PortsProbed int
	// MinProbed is the fewest probed ports for all_ports_open; zero means 20.
	MinProbed int
	// FlapWindow and FlapThreshold (config global.flap): when the reported
	// state of a port changes for the FlapThreshold-th time within
	// FlapWindow (measured on the scans' start times), that change is
	// reported with Flaps set to the count and the port is held: further
	// alternations are folded until it keeps one state for a whole
	// FlapWindow; if that state differs from the last report, it is
	// reported once more with Flaps set to the alternations folded.
	// Zero means 1h and 4; a threshold below 2 means 2.
	FlapWindow    time.Duration
	FlapThreshold int
}

// Defaults of Policy.FlapWindow and Policy.FlapThreshold, the same as
// config's global.flap.
const (
	DefaultFlapWindow    = time.Hour
	DefaultFlapThreshold = 4
)

func (p Policy) withDefaults() Policy {
	if p.AllOpenShare <= 0 || p.AllOpenShare > 1 {
		p.AllOpenShare = 0.5
	}
	if p.MinProbed <= 0 {
		p.MinProbed = 20
	}
	if p.FlapWindow <= 0 {
		p.FlapWindow = DefaultFlapWindow
	}
	switch {
	case p.FlapThreshold <= 0:
		p.FlapThreshold = DefaultFlapThreshold
	case p.FlapThreshold < 2:
		p.FlapThreshold = 2
	}
	return p
}

// Validate checks the version rules; config calls it to report bad rules.
func (p Policy) Validate() error {
	for port, rule := range p.Versions {
		if _, err := ParseRule(rule); err != nil {
			return fmt.Errorf("diff: versions[%s] %q: %w", port, rule, err)
		}
	}
	return nil
}

// view is the exposure a policy is judged on: of the up hosts, without
// those that answer on every port, the open ports the policy has a rule
// for, and which ports are open anywhere. Only the ports a verdict can
// name are kept, so judging an estate of 100,000 open ports under a
// policy of a few rules holds a few ports, not the estate.
type view struct {
	hosts        []string                   // with kept ports, sorted
	ports        map[string][]snapshot.Port // kept open ports by host, sorted
	openAnywhere map[spec.ProtoPort]bool
}

// judged reports whether a verdict of p can name the open port pp.
func (p Policy) judged(pp spec.ProtoPort) bool {
	if _, ok := p.Versions[pp]; ok {
		return true
	}
	return slices.Contains(p.NeverOpen, pp) || (p.ExpectOpenSet && !slices.Contains(p.Open, pp))
}

// add records the open port pt of addr, built by port only when p judges it.
func (v *view) add(addr string, pp spec.ProtoPort, p Policy, port func() snapshot.Port) {
	v.openAnywhere[pp] = true
	if !p.judged(pp) {
		return
	}
	if _, ok := v.ports[addr]; !ok {
		v.hosts = append(v.hosts, addr)
	}
	v.ports[addr] = append(v.ports[addr], port())
}

func newView() view {
	return view{ports: map[string][]snapshot.Port{}, openAnywhere: map[spec.ProtoPort]bool{}}
}

func snapshotView(s *snapshot.Snapshot, allOpen map[string]bool, p Policy) view {
	v := newView()
	for _, h := range s.Hosts {
		if h.State != snapshot.HostUp || allOpen[h.Address] {
			continue
		}
		for _, pt := range h.Ports {
			if pt.State == snapshot.StateOpen {
				v.add(h.Address, protoPort(pt), p, func() snapshot.Port { return pt })
			}
		}
	}
	v.sort()
	return v
}

func stateView(st *State, p Policy) view {
	v := newView()
	for ks, ps := range st.Ports {
		if !ps.Open {
			continue
		}
		k, ok := parsePortKey(ks)
		if !ok || st.AllOpen[k.addr] {
			continue
		}
		if h := st.Hosts[k.addr]; h == nil || h.Down {
			continue
		}
		v.add(k.addr, spec.ProtoPort{Proto: cmp.Or(k.proto, spec.ProtoTCP), Port: k.port}, p,
			func() snapshot.Port { return *ps.asPort(k) })
	}
	v.sort()
	return v
}

func (v *view) sort() {
	sortAddrs(v.hosts)
	for _, ps := range v.ports {
		sort.Slice(ps, func(i, j int) bool {
			if ps[i].Port != ps[j].Port {
				return ps[i].Port < ps[j].Port
			}
			return ps[i].Protocol < ps[j].Protocol
		})
	}
}

func sortAddrs(a []string) {
	s := snapshot.Snapshot{}
	for _, x := range a {
		s.Hosts = append(s.Hosts, snapshot.Host{Address: x})
	}
	s.Sort()
	for i := range a {
		a[i] = s.Hosts[i].Address
	}
}

// sortedAddrs returns the addresses of m (allOpenHosts) in address order.
func sortedAddrs(m map[string]string) []string {
	a := slices.Collect(maps.Keys(m))
	sortAddrs(a)
	return a
}

// verdictKey identifies a verdict across scans.
func verdictKey(c snapshot.Change) string {
	return string(c.Kind) + "|" + portKey{c.Address, c.Port, c.Protocol}.String()
}

// verdicts lists the policy verdicts that hold in v, in a stable order.
func verdicts(v view, p Policy) []snapshot.Change {
	var out []snapshot.Change
	for _, addr := range v.hosts {
		for _, pt := range v.ports[addr] {
			pt := pt
			pp := protoPort(pt)
			c := snapshot.Change{Address: addr, Port: pt.Port, Protocol: pt.Protocol, After: &pt}
			switch {
			case slices.Contains(p.NeverOpen, pp):
				c.Kind = snapshot.ForbiddenOpen
				c.Detail = fmt.Sprintf("port %d/%s is in expect.never_open", pt.Port, pt.Protocol)
				out = append(out, c)
			case p.ExpectOpenSet && !slices.Contains(p.Open, pp):
				c.Kind = snapshot.UnexpectedOpen
				c.Detail = fmt.Sprintf("port %d/%s is not in expect.open", pt.Port, pt.Protocol)
				out = append(out, c)
			}
			if rule, ok := p.Versions[pp]; ok && pt.Service != nil && pt.Service.Version != "" {
				r, err := ParseRule(rule)
				if err == nil && !r.Allows(pt.Service.Version) {
					c.Kind = snapshot.VersionPolicy
					c.Detail = fmt.Sprintf("%s %q does not satisfy %q", pt.Service.Product, pt.Service.Version, r.String())
					out = append(out, c)
				}
			}
		}
	}
	if p.ExpectOpenSet {
		want := slices.Clone(p.Open)
		slices.SortFunc(want, spec.ProtoPort.Compare)
		for _, pp := range slices.Compact(want) {
			if !v.openAnywhere[pp] {
				out = append(out, snapshot.Change{Kind: snapshot.ExpectedMissing, Port: pp.Port, Protocol: pp.Proto,
					Detail: fmt.Sprintf("port %s of expect.open is open on no host", pp.Label())})
			}
		}
	}
	return out
}

// protoPort is the policy key of an open port; a port without a protocol
// (a snapshot from elsewhere) is TCP.
func protoPort(pt snapshot.Port) spec.ProtoPort {
	return spec.ProtoPort{Proto: cmp.Or(pt.Protocol, spec.ProtoTCP), Port: pt.Port}
}

// allOpenHosts finds the hosts that answer open on more than the policy's
// share of probed ports, with a detail line each.
func allOpenHosts(s *snapshot.Snapshot, p Policy) map[string]string {
	probed := p.PortsProbed
	if probed == 0 {
		up, open := s.HostsUp(), s.OpenPorts()
		if up > 0 && s.Quality.Closed+s.Quality.Filtered > 0 {
			probed = (open + int(s.Quality.Closed) + int(s.Quality.Filtered)) / up
		}
	}
	out := map[string]string{}
	if probed < p.MinProbed {
		return out
	}
	for _, h := range s.Hosts {
		if h.State != snapshot.HostUp {
			continue
		}
		open := 0
		for _, pt := range h.Ports {
			if pt.State == snapshot.StateOpen {
				open++
			}
		}
		if float64(open) > p.AllOpenShare*float64(probed) {
			out[h.Address] = fmt.Sprintf("%d of %d probed ports answer open (SYN proxy or tarpit?)", open, probed)
		}
	}
	return out
}

// Evaluate lists every policy verdict that holds in cur (expected_missing
// only when cur is complete), plus
// all_ports_open for hosts answering on every port: the conditions an
// alerting system keeps firing while they hold. Verdicts carry cur's
// target, time and id.
func Evaluate(cur *snapshot.Snapshot, p Policy) []snapshot.Change {
	p = p.withDefaults()
	ao := allOpenHosts(cur, p)
	all := map[string]bool{}
	for a := range ao {
		all[a] = true
	}
	var out []snapshot.Change
	for _, c := range verdicts(snapshotView(cur, all, p), p) {
		// A scan cut short is no evidence that a port is missing.
		if cur.Complete || c.Kind != snapshot.ExpectedMissing {
			out = append(out, c)
		}
	}
	for _, a := range sortedAddrs(ao) {
		out = append(out, snapshot.Change{Kind: snapshot.AllPortsOpen, Address: a, Detail: ao[a]})
	}
	for i := range out {
		out[i].Target, out[i].At, out[i].Snapshot = cur.Target, cur.StartedAt, cur.ID
	}
	return out
}
