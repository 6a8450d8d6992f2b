package diff

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/exposure-monitor/exposure/snapshot"
)

// stateVersion is the format of MarshalBinary. Format 1 kept only the name,
// product, version and certificate fingerprint of a port's service, format
// 2 each port's service in full; format 3 keeps each distinct service once
// (stateWire). UnmarshalState still reads them all.
const stateVersion = 3

// State is what the diff of one target remembers between scans: the
// reported view (what the changes so far have told the user: which hosts are
// up, which ports are open, with which service), the policy verdicts that
// hold in it, hosts that answer on every port, and the flap bookkeeping.
// Comparing a scan with the reported view rather than with the previous
// scan is what lets a change wait for confirmation: until it is confirmed
// the view is unchanged and the next scan proposes it again.
//
// A State is not safe for concurrent use. It serialises with MarshalBinary
// (compact JSON) and UnmarshalState; the bytes are identical when nothing
// changed, so the store can skip the write.
type State struct {
	V         int                   `json:"v"`
	Baselined bool                  `json:"b,omitempty"`
	Hosts     map[string]*hostState `json:"h,omitempty"`
	Ports     map[string]*portState `json:"p,omitempty"` // key: address|port/protocol
	Verdicts  map[string]bool       `json:"c,omitempty"` // key: kind|address|port/protocol
	AllOpen   map[string]bool       `json:"a,omitempty"`

	// The scan being diffed, for changes made by Confirm.
	scan scanRef
	// copies are the state's own copies of the services it was given
	// (own), by the given Service.
	copies map[*snapshot.Service]*snapshot.Service
}

type scanRef struct {
	target, id, previous string
	at                   time.Time
	complete             bool
	policy               Policy
}

type hostState struct {
	Down bool `json:"d,omitempty"`
}

// portState is one port of the reported view. A closed port is kept only
// while its flap bookkeeping needs it.
type portState struct {
	Open bool `json:"o,omitempty"`
	// Service is the reported service in full (info, CPE and certificate
	// too), so the Before of a change says all the user was told. The diff
	// compares its name, product, version and certificate fingerprint.
	Service *snapshot.Service `json:"s,omitempty"`
	// Tentative says the service above came from an inconclusive
	// detection: a conclusive one replaces it without a change. Weak
	// counts the inconclusive detections in a row that differ from it.
	Tentative bool `json:"t,omitempty"`
	Weak      int  `json:"w,omitempty"`
	// Recent holds the times (unix nanoseconds, oldest first) of the
	// reported open/closed transitions within Policy.FlapWindow, at most
	// Policy.FlapThreshold of them: the flap detector's memory.
	Recent []int64 `json:"rc,omitempty"`
	// Damped ports flap: their transitions are not reported until they
	// have kept one state for Policy.FlapWindow. Obs is the last observed
	// state, Since when it was first observed (unix nanoseconds), Flaps
	// the alternations folded so far.
	Damped bool  `json:"dm,omitempty"`
	Obs    bool  `json:"ob,omitempty"`
	Since  int64 `json:"sn,omitempty"`
	Flaps  int   `json:"fl,omitempty"`
}

// NewState is the state of a target never scanned.
func NewState() *State {
	return &State{V: stateVersion, Hosts: map[string]*hostState{}, Ports: map[string]*portState{},
		Verdicts: map[string]bool{}, AllOpen: map[string]bool{}}
}

// stateWire is the stored form of a State: each distinct service once in
// Services, the ports referring to it by index, so a target of 100,000
// open ports running a few services stores a few services.
type stateWire struct {
	V         int                   `json:"v"`
	Baselined bool                  `json:"b,omitempty"`
	Hosts     map[string]*hostState `json:"h,omitempty"`
	Ports     map[string]*portWire  `json:"p,omitempty"`
	Verdicts  map[string]bool       `json:"c,omitempty"`
	AllOpen   map[string]bool       `json:"a,omitempty"`
	Services  []*snapshot.Service   `json:"sv,omitempty"`
}

type portWire struct {
	portState
	// Service is a state of format 2 or older, which kept each port's
	// service inline; it shadows portState's.
	Service *snapshot.Service `json:"s,omitempty"`
	// SI is 1 + the index of the port's service in Services, 0 for none.
	SI int `json:"si,omitempty"`
}

// MarshalBinary encodes the state for store.Commit's DiffState. The same
// state encodes to the same bytes (the table is in the order of the
// services' encodings), so an unchanged scan stores nothing new.
func (s *State) MarshalBinary() ([]byte, error) {
	w := stateWire{V: s.V, Baselined: s.Baselined, Hosts: s.Hosts, Verdicts: s.Verdicts, AllOpen: s.AllOpen,
		Ports: make(map[string]*portWire, len(s.Ports))}
	// The distinct services, by encoding, and each one's index in the
	// table.
	encoded := map[*snapshot.Service]string{}
	byValue := map[string]*snapshot.Service{}
	for _, ps := range s.Ports {
		if sv := ps.Service; sv != nil {
			if _, ok := encoded[sv]; !ok {
				b, err := json.Marshal(sv)
				if err != nil {
					return nil, fmt.Errorf("diff: encode state: %w", err)
				}
				encoded[sv] = string(b)
				byValue[string(b)] = sv
			}
		}
	}
	order := slices.Sorted(maps.Keys(byValue))
	index := make(map[string]int, len(order))
	for i, e := range order {
		w.Services = append(w.Services, byValue[e])
		index[e] = i + 1
	}
	ports := make([]portWire, len(s.Ports)) // one allocation for all
	i := 0
	for k, ps := range s.Ports {
		pw := &ports[i]
		i++
		pw.portState = *ps
		pw.portState.Service = nil
		if sv := ps.Service; sv != nil {
			pw.SI = index[encoded[sv]]
		}
		w.Ports[k] = pw
	}
	return json.Marshal(w)
}

// UnmarshalState decodes MarshalBinary's bytes; nil or empty bytes give a
// new state.
func UnmarshalState(b []byte) (*State, error) {
	st := NewState()
	if len(b) == 0 {
		return st, nil
	}
	var w stateWire
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("diff: decode state: %w", err)
	}
	if w.V < 1 || w.V > stateVersion {
		return nil, fmt.Errorf("diff: state format %d, want %d", w.V, stateVersion)
	}
	st.Baselined, st.Hosts, st.Verdicts, st.AllOpen = w.Baselined, w.Hosts, w.Verdicts, w.AllOpen
	st.Ports = make(map[string]*portState, len(w.Ports))
	for k, pw := range w.Ports {
		ps := &pw.portState
		switch {
		case pw.SI > 0 && pw.SI <= len(w.Services):
			ps.Service = w.Services[pw.SI-1]
		case pw.SI != 0:
			return nil, fmt.Errorf("diff: decode state: port %s: service %d of %d", k, pw.SI, len(w.Services))
		default:
			ps.Service = pw.Service
		}
		st.Ports[k] = ps
	}
	st.V = stateVersion
	st.init()
	return st, nil
}

func (s *State) init() {
	if s.Hosts == nil {
		s.Hosts = map[string]*hostState{}
	}
	if s.Ports == nil {
		s.Ports = map[string]*portState{}
	}
	if s.Verdicts == nil {
		s.Verdicts = map[string]bool{}
	}
	if s.AllOpen == nil {
		s.AllOpen = map[string]bool{}
	}
}

func (s *State) clone() *State {
	c := &State{V: stateVersion, Baselined: s.Baselined, scan: s.scan,
		Hosts: make(map[string]*hostState, len(s.Hosts)), Ports: make(map[string]*portState, len(s.Ports)),
		Verdicts: maps.Clone(s.Verdicts), AllOpen: maps.Clone(s.AllOpen)}
	for k, v := range s.Hosts {
		h := *v
		c.Hosts[k] = &h
	}
	for k, v := range s.Ports {
		p := *v
		p.Recent = slices.Clone(v.Recent)
		c.Ports[k] = &p
	}
	c.init()
	return c
}

type portKey struct {
	addr  string
	port  uint16
	proto string
}

func (k portKey) String() string {
	return k.addr + "|" + strconv.Itoa(int(k.port)) + "/" + k.proto
}

func parsePortKey(s string) (portKey, bool) {
	addr, rest, ok := strings.Cut(s, "|")
	if !ok {
		return portKey{}, false
	}
	num, proto, ok := strings.Cut(rest, "/")
	n, err := strconv.ParseUint(num, 10, 16)
	if !ok || err != nil {
		return portKey{}, false
	}
	return portKey{addr, uint16(n), proto}, true
}

// prune forgets the transitions that left the flap window ending at now.
func (p *portState) prune(now time.Time, window time.Duration) {
	i := 0
	for i < len(p.Recent) && now.Sub(time.Unix(0, p.Recent[i])) >= window {
		i++
	}
	if i > 0 {
		p.Recent = slices.Delete(p.Recent, 0, i)
	}
	if len(p.Recent) == 0 {
		p.Recent = nil
	}
}

// UnmarshalJSON reads every format of a port: format 3 refers to the
// state's service table (SI), format 2 kept the service inline, format 1
// kept the service's facts in fields of their own.
func (w *portWire) UnmarshalJSON(b []byte) error {
	type plain portState
	v := struct {
		*plain
		Service *snapshot.Service `json:"s"`
		SI      int               `json:"si"`
		Name    string            `json:"n"`
		Product string            `json:"pr"`
		Version string            `json:"v"`
		Cert    string            `json:"x"`
	}{plain: (*plain)(&w.portState)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	w.Service, w.SI = v.Service, v.SI
	if w.Service == nil && (v.Name != "" || v.Product != "" || v.Version != "" || v.Cert != "") {
		w.Service = &snapshot.Service{Name: v.Name, Product: v.Product, Version: v.Version}
		if v.Cert != "" {
			w.Service.Cert = &snapshot.Cert{Fingerprint: v.Cert}
		}
	}
	return nil
}

// setService records the service as reported, as tentative when the
// detection was inconclusive.
func (p *portState) setService(svc *snapshot.Service, st *State) {
	if svc == nil {
		return
	}
	if !p.Service.Equal(svc) {
		// The state keeps its own copy, one per distinct service it was
		// given (an unchanged one stays shared with the states it was
		// cloned from: the state never changes a Service in place).
		p.Service = st.own(svc)
	}
	p.Tentative, p.Weak = inconclusive(svc, nil), 0
}

// known is the reported service; the zero Service when none is.
func (p *portState) known() snapshot.Service {
	if p.Service == nil {
		return snapshot.Service{}
	}
	return *p.Service
}

// certFP is the fingerprint of the reported service's certificate.
func (p *portState) certFP() string {
	if p.Service == nil || p.Service.Cert == nil {
		return ""
	}
	return p.Service.Cert.Fingerprint
}

func (p *portState) knowsService() bool {
	k := p.known()
	return k.Name != "" || k.Product != "" || k.Version != ""
}

// own returns the state's copy of svc: one copy per Service the state was
// given, so that the ports of a snapshot that share a Service share the
// state's copy too.
func (s *State) own(svc *snapshot.Service) *snapshot.Service {
	if c, ok := s.copies[svc]; ok && c.Equal(svc) {
		return c
	}
	if s.copies == nil {
		s.copies = map[*snapshot.Service]*snapshot.Service{}
	}
	c := cloneService(svc)
	s.copies[svc] = c
	return c
}

// cloneService copies svc deeply: the state must not share memory with the
// snapshots it was built from, nor hand its own out.
func cloneService(svc *snapshot.Service) *snapshot.Service {
	c := *svc
	c.CPE = slices.Clone(svc.CPE)
	if svc.Cert != nil {
		cert := *svc.Cert
		cert.SANs = slices.Clone(svc.Cert.SANs)
		c.Cert = &cert
	}
	return &c
}

// asPort rebuilds a snapshot.Port from the reported view, for Before.
func (p *portState) asPort(k portKey) *snapshot.Port {
	st := snapshot.StateClosed
	if p.Open {
		st = snapshot.StateOpen
	}
	out := &snapshot.Port{Port: k.port, Protocol: k.proto, State: st}
	if p.knowsService() || p.certFP() != "" {
		out.Service = cloneService(p.Service)
	}
	return out
}
