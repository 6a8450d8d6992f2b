package diff

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// Result is what one scan changed.
type Result struct {
	// Changes are final: host_up, host_down, service, version and
	// certificate changes, all_ports_open, and policy verdicts that newly
	// hold.
	Changes []snapshot.Change
	// Pending are port openings and closures that become changes only
	// after Confirm re-probes them.
	Pending []Pending
	// State is the new state to store; Confirm updates it with the
	// confirmed pending changes, so store it after Confirm.
	State *State
}

// Pending is one proposed port transition awaiting confirmation.
type Pending struct {
	Pair     spec.Pair
	Protocol string
	// Open is the state to confirm: true for an opening.
	Open bool
	// Change is the port_opened or port_closed change to commit.
	Change snapshot.Change

	st   *State
	damp bool // this transition reveals a flapping port
}

// Diff compares the scan cur with the reported view in st (nil: a target
// never diffed) and returns the changes. It does not modify st or the
// snapshots.
//
// prev is the previous complete scan of the target; it is used only to
// rebuild a lost state, so a daemon restarted without its diff state does
// not report every port as new. The first complete scan is the baseline:
// it yields only policy verdicts. An incomplete cur yields no closures and
// no host_down, since a scan cut short is no evidence that anything went
// away.
func Diff(prev, cur *snapshot.Snapshot, st *State, p Policy) Result {
	if st != nil {
		st = st.clone()
	}
	return DiffOwned(prev, cur, st, p)
}

// DiffOwned is Diff for a caller that hands st over (one just decoded by
// UnmarshalState, used for nothing else): st becomes the result's State
// rather than being copied first, which for an estate's state of 100,000
// ports is worth its size.
func DiffOwned(prev, cur *snapshot.Snapshot, st *State, p Policy) Result {
	p = p.withDefaults()
	if st == nil {
		st = NewState()
	}
	if !st.Baselined && prev != nil && prev.Complete && prev.Target == cur.Target {
		st.seed(prev, p)
		st.Verdicts = keys(verdicts(stateView(st, p), p))
	}
	prevID := ""
	if prev != nil {
		prevID = prev.ID
	}
	st.scan = scanRef{target: cur.Target, id: cur.ID, previous: prevID, at: cur.StartedAt,
		complete: cur.Complete, policy: p}
	res := Result{State: st}
	if !st.Baselined {
		if !cur.Complete {
			return res // wait for a complete baseline
		}
		st.seed(cur, p)
		// A tarpit in the baseline is worth one line: its ports are not
		// diffed from now on.
		found := allOpenHosts(cur, p)
		for _, a := range sortedAddrs(found) {
			c := snapshot.Change{Kind: snapshot.AllPortsOpen, Address: a, Detail: found[a]}
			st.stamp(&c)
			res.Changes = append(res.Changes, c)
		}
		res.Changes = append(res.Changes, st.newVerdicts(p, true)...)
		return res
	}
	d := differ{st: st, cur: cur, p: p}
	d.allOpen()
	d.hosts()
	d.ports()
	res.Changes = append(d.changes, st.newVerdicts(p, cur.Complete)...)
	res.Pending = d.pending
	return res
}

// seed makes s the reported view of snapshot sn without reporting it.
func (st *State) seed(sn *snapshot.Snapshot, p Policy) {
	st.Baselined = true
	for a := range allOpenHosts(sn, p) {
		st.AllOpen[a] = true
	}
	for _, h := range sn.Hosts {
		if h.State != snapshot.HostUp {
			continue
		}
		st.Hosts[h.Address] = &hostState{}
		if !st.AllOpen[h.Address] {
			st.reportOpen(h)
		}
	}
}

// reportOpen puts the open ports of h into the reported view.
func (st *State) reportOpen(h snapshot.Host) {
	for _, pt := range h.Ports {
		if pt.State == snapshot.StateOpen {
			ps := &portState{Open: true}
			ps.setService(pt.Service, st)
			st.Ports[portKey{h.Address, pt.Port, pt.Protocol}.String()] = ps
		}
	}
}

func keys(cs []snapshot.Change) map[string]bool {
	m := make(map[string]bool, len(cs))
	for _, c := range cs {
		m[verdictKey(c)] = true
	}
	return m
}

// newVerdicts recomputes the verdicts of the reported view and returns the
// ones that did not hold before. Verdicts that stopped holding are
// forgotten only when resolve is set (a complete scan).
func (st *State) newVerdicts(p Policy, resolve bool) []snapshot.Change {
	now := verdicts(stateView(st, p), p)
	var out []snapshot.Change
	for _, c := range now {
		k := verdictKey(c)
		if !st.Verdicts[k] {
			st.stamp(&c)
			out = append(out, c)
		}
	}
	if resolve {
		st.Verdicts = keys(now)
	} else {
		for _, c := range now {
			st.Verdicts[verdictKey(c)] = true
		}
	}
	return out
}

func (st *State) stamp(c *snapshot.Change) {
	c.Target, c.At, c.Snapshot, c.Previous = st.scan.target, st.scan.at, st.scan.id, st.scan.previous
}

type differ struct {
	st      *State
	cur     *snapshot.Snapshot
	p       Policy
	changes []snapshot.Change
	pending []Pending
}

func (d *differ) change(c snapshot.Change) {
	d.st.stamp(&c)
	d.changes = append(d.changes, c)
}

func (d *differ) allOpen() {
	found := allOpenHosts(d.cur, d.p)
	for _, a := range sortedAddrs(found) {
		if !d.st.AllOpen[a] {
			d.st.AllOpen[a] = true
			d.change(snapshot.Change{Kind: snapshot.AllPortsOpen, Address: a, Detail: found[a]})
		}
	}
	// A host leaves the all-open state when a complete scan finds it open
	// on less than half the share that put it there (hysteresis, so a
	// tarpit hovering at the threshold does not toggle). What it answered
	// before is no guide to its real ports, so they become its new
	// baseline silently; policy verdicts on them still fire.
	half := d.p
	half.AllOpenShare /= 2
	stay := allOpenHosts(d.cur, half)
	for _, h := range d.cur.Hosts {
		if h.State != snapshot.HostUp || !d.st.AllOpen[h.Address] || stay[h.Address] != "" || !d.cur.Complete {
			continue
		}
		delete(d.st.AllOpen, h.Address)
		for ks := range d.st.Ports {
			if pk, ok := parsePortKey(ks); ok && pk.addr == h.Address {
				delete(d.st.Ports, ks)
			}
		}
		d.st.reportOpen(h)
	}
}

func (d *differ) hosts() {
	up := map[string]bool{}
	for _, h := range d.cur.Hosts {
		if h.State != snapshot.HostUp {
			continue
		}
		up[h.Address] = true
		hs := d.st.Hosts[h.Address]
		if hs == nil || hs.Down {
			d.st.Hosts[h.Address] = &hostState{}
			d.change(snapshot.Change{Kind: snapshot.HostUpKind, Address: h.Address})
		}
	}
	if !d.cur.Complete {
		return
	}
	var down []string
	for addr, hs := range d.st.Hosts {
		if !hs.Down && !up[addr] {
			down = append(down, addr)
		}
	}
	sortAddrs(down)
	for _, addr := range down {
		// One change for the host: its ports stay in the view, so when it
		// comes back only real port differences are reported.
		d.st.Hosts[addr].Down = true
		d.change(snapshot.Change{Kind: snapshot.HostDownKind, Address: addr})
	}
}

func (d *differ) ports() {
	now := d.st.scan.at
	observed := map[string]*snapshot.Port{}
	diffed := map[string]bool{} // hosts whose ports this scan judges
	for _, h := range d.cur.Hosts {
		if h.State != snapshot.HostUp || d.st.AllOpen[h.Address] {
			continue
		}
		diffed[h.Address] = true
		for i, pt := range h.Ports {
			if pt.State == snapshot.StateOpen {
				observed[portKey{h.Address, pt.Port, pt.Protocol}.String()] = &h.Ports[i]
			}
		}
	}
	var all []string
	for ks := range observed {
		all = append(all, ks)
	}
	for ks := range d.st.Ports {
		if _, ok := observed[ks]; ok {
			continue
		}
		if pk, ok := parsePortKey(ks); ok && diffed[pk.addr] {
			all = append(all, ks)
		}
	}
	sortPortKeys(all)
	for _, ks := range all {
		pk, _ := parsePortKey(ks)
		pt := observed[ks]
		obs := pt != nil
		if !obs && !d.cur.Complete {
			continue // absence in a partial scan means nothing
		}
		ps := d.st.Ports[ks]
		if ps != nil {
			ps.prune(now, d.p.FlapWindow)
		}
		if ps != nil && ps.Damped {
			if obs != ps.Obs {
				ps.Flaps++
				ps.Obs, ps.Since = obs, now.UnixNano()
			} else if now.Sub(time.Unix(0, ps.Since)) >= d.p.FlapWindow {
				// Settled: one report if it settled on the other state.
				ps.Damped, ps.Since, ps.Recent = false, 0, nil
				if obs != ps.Open {
					d.propose(pk, ps, pt, obs, ps.Flaps, false)
				}
				ps.Flaps = 0
			}
			d.forget(ks, ps)
			continue
		}
		reported := ps != nil && ps.Open
		if obs != reported {
			flaps, damp := 0, false
			if ps != nil && len(ps.Recent)+1 >= d.p.FlapThreshold {
				// The threshold-th transition within the window: report
				// this one with the count, then hold the port.
				flaps, damp = len(ps.Recent)+1, true
			}
			d.propose(pk, ps, pt, obs, flaps, damp)
		} else if obs && pt.Service != nil {
			d.service(pk, ps, pt)
		}
		if ps != nil {
			d.forget(ks, ps)
		}
	}
}

// forget drops closed ports that no bookkeeping needs any more.
func (d *differ) forget(ks string, ps *portState) {
	if !ps.Open && !ps.Damped && len(ps.Recent) == 0 {
		delete(d.st.Ports, ks)
	}
}

func (d *differ) propose(pk portKey, ps *portState, pt *snapshot.Port, open bool, flaps int, damp bool) {
	addr, addrErr := netip.ParseAddr(pk.addr)
	c := snapshot.Change{Address: pk.addr, Port: pk.port, Protocol: pk.proto, Flaps: flaps}
	if open {
		c.Kind = snapshot.PortOpened
		after := *pt
		c.After = &after
	} else {
		c.Kind = snapshot.PortClosed
		c.Before = ps.asPort(pk)
	}
	d.st.stamp(&c)
	pd := Pending{
		Pair: spec.Pair{Addr: addr, Port: pk.port}, Protocol: pk.proto, Open: open, Change: c,
		st: d.st, damp: damp,
	}
	if addrErr != nil {
		// Not an address that can be re-probed (scanners report
		// addresses, but a snapshot may come from elsewhere): final.
		pd.apply()
		d.changes = append(d.changes, c)
		return
	}
	d.pending = append(d.pending, pd)
}

func (d *differ) service(pk portKey, ps *portState, pt *snapshot.Port) {
	svc := pt.Service
	weak := inconclusive(svc, ps)
	if !ps.knowsService() || ps.Tentative && !weak {
		// The first detection is not a change, nor is the first
		// conclusive one after inconclusive ones.
		ps.setService(svc, d.st)
		return
	}
	known := ps.known()
	after := *pt
	// Before is built when a change is made (change): most ports of a
	// scan are unchanged, and the copy of the reported service is not.
	c := snapshot.Change{Address: pk.addr, Port: pk.port, Protocol: pk.proto, After: &after}
	switch {
	case svc.Name != known.Name || svc.Product != known.Product:
		c.Kind = snapshot.ServiceChanged
	case svc.Version != known.Version:
		c.Kind = snapshot.VersionChanged
	}
	if weak && c.Kind != "" {
		// A detection that recognised less than before (nothing, or no
		// version), or that ran out of time, is what a loaded host or
		// service gives now and then: it replaces the known service
		// only when it holds for WeakScans scans in a row.
		if ps.Weak++; ps.Weak < WeakScans {
			return
		}
		c.Detail = fmt.Sprintf("service detection inconclusive in %d scans in a row", ps.Weak)
	} else if weak {
		// Inconclusive but not different: keep what is known, cert too.
		ps.Weak = 0
		return
	}
	ps.Weak = 0
	if c.Kind != "" || (svc.Cert != nil && svc.Cert.Fingerprint != "" && ps.certFP() != "" && svc.Cert.Fingerprint != ps.certFP()) {
		c.Before = ps.asPort(pk)
	}
	if c.Kind != "" {
		d.change(c)
	}
	if svc.Cert != nil && svc.Cert.Fingerprint != "" && ps.certFP() != "" && svc.Cert.Fingerprint != ps.certFP() {
		c.Kind, c.Detail = snapshot.CertChanged, ""
		d.change(c)
	}
	ps.setService(svc, d.st)
	// Reported: what follows compares with it, conclusive or not.
	ps.Tentative = false
}

// WeakScans is how many scans in a row an inconclusive service detection
// must hold before it is reported as a service or version change.
const WeakScans = 3

// inconclusive reports whether detection result svc says less than a
// detection can: the detector ran out of time (Incomplete), recognised
// nothing ("unknown", "tcpwrapped"), or lost the version the known
// service ps had.
func inconclusive(svc *snapshot.Service, ps *portState) bool {
	switch {
	case svc.Incomplete, svc.Name == "", svc.Name == "unknown", svc.Name == "tcpwrapped":
		return true
	}
	if ps == nil {
		return false
	}
	k := ps.known()
	return k.Version != "" && svc.Version == "" && svc.Name == k.Name && svc.Product == k.Product
}

// apply records a confirmed transition in the reported view.
func (pd *Pending) apply() {
	st := pd.st
	ks := portKey{pd.Change.Address, pd.Pair.Port, pd.Protocol}.String()
	ps := st.Ports[ks]
	if ps == nil {
		ps = &portState{}
		st.Ports[ks] = ps
	}
	ps.Open = pd.Open
	if svc := pd.Change.After; pd.Open && svc != nil && svc.Service != nil {
		ps.setService(svc.Service, st)
	}
	if !pd.Open {
		ps.Service = nil
		ps.Tentative, ps.Weak = false, 0
	}
	now := st.scan.at.UnixNano()
	ps.Recent = append(ps.Recent, now)
	if n := st.scan.policy.FlapThreshold; n > 0 && len(ps.Recent) > n {
		ps.Recent = slices.Delete(ps.Recent, 0, len(ps.Recent)-n)
	}
	if pd.damp {
		ps.Damped, ps.Obs, ps.Since, ps.Flaps = true, pd.Open, now, pd.Change.Flaps
	}
}

// sortPortKeys orders address|port/proto keys by address, port, protocol.
func sortPortKeys(ks []string) {
	type parsed struct {
		k    portKey
		addr netip.Addr
		s    string
	}
	ps := make([]parsed, len(ks))
	for i, s := range ks {
		k, _ := parsePortKey(s)
		a, _ := netip.ParseAddr(k.addr)
		ps[i] = parsed{k, a, s}
	}
	sort.Slice(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if c := a.addr.Compare(b.addr); c != 0 {
			return c < 0
		}
		if a.k.addr != b.k.addr {
			return a.k.addr < b.k.addr
		}
		if a.k.port != b.k.port {
			return a.k.port < b.k.port
		}
		return a.k.proto < b.k.proto
	})
	for i := range ps {
		ks[i] = ps[i].s
	}
}
