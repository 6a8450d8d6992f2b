package nmapxml

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/exposure-monitor/exposure/internal/textsafe"
	"github.com/exposure-monitor/exposure/snapshot"
)

// Limits of Read: the file is untrusted input.
const (
	// MaxFileSize bounds the bytes read from one file.
	MaxFileSize = 256 << 20
	// MaxAttr bounds one attribute or text value; nmap writes none longer
	// than a service fingerprint.
	MaxAttr = 64 << 10
	// fieldLimit bounds the text kept of a field, as banners are.
	fieldLimit = 256
)

// ErrNotNmap is returned for XML that is not an nmaprun document.
var ErrNotNmap = errors.New("not nmap XML")

// Error is a bad spot of an input file.
type Error struct {
	Line  int
	Field string // element/attribute
	Value string // cleaned and cut
	Err   error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("line %d", e.Line)
	if e.Field != "" {
		s += ": " + e.Field
	}
	if e.Value != "" {
		s += ": " + strconv.Quote(e.Value)
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// ReadOptions name what the file does not hold.
type ReadOptions struct {
	// Target names the snapshot's target.
	Target string
	// MaxBytes bounds the file; 0 means MaxFileSize.
	MaxBytes int64
}

// Read reads one nmap XML document as a snapshot of target. Closed ports
// are counted in Quality, not listed. A document cut short (no runstats,
// or an error exit) reads as an incomplete snapshot with the hosts that
// were finished, so it is never taken for "everything closed". Entities
// other than XML's own are errors (nothing is expanded), and no attribute
// or text may exceed MaxAttr bytes.
func Read(r io.Reader, o ReadOptions) (*snapshot.Snapshot, error) {
	limit := o.MaxBytes
	if limit <= 0 {
		limit = MaxFileSize
	}
	lr := &io.LimitedReader{R: r, N: limit + 1}
	d := xml.NewDecoder(lr)
	d.Strict = true
	rd := &reader{d: d, snap: &snapshot.Snapshot{Target: o.Target, Hosts: []snapshot.Host{}}}
	err := rd.run()
	if lr.N <= 0 {
		return nil, &Error{Line: rd.line(), Err: fmt.Errorf("file larger than %d bytes", limit)}
	}
	if err != nil {
		return nil, err
	}
	s := rd.snap
	if s.StartedAt.IsZero() {
		return nil, &Error{Line: rd.line(), Field: "nmaprun/start", Err: errors.New("no start time")}
	}
	if s.FinishedAt.IsZero() {
		s.FinishedAt = s.StartedAt
	}
	s.ID = snapshot.NewID(o.Target, s.StartedAt)
	s.Sort()
	return s, nil
}

type reader struct {
	d    *xml.Decoder
	snap *snapshot.Snapshot
	root bool
	host *snapshot.Host
	port *snapshot.Port
	svc  *snapshot.Service
	// svcTable: the service name came from nmap's port table, not a
	// detection.
	svcTable bool
	cpe      *strings.Builder
	done     bool // runstats/finished seen with success
	// extra is the extraports element being read: its state, its count
	// and how many of them its extrareasons gave a protocol.
	extra *extraElem
}

type extraElem struct {
	state        string
	count, given uint64
}

func (r *reader) line() int {
	l, _ := r.d.InputPos()
	return l
}

func (r *reader) errf(field, value string, format string, args ...any) error {
	return &Error{Line: r.line(), Field: field, Value: textsafe.Clean(value, 64), Err: fmt.Errorf(format, args...)}
}

func (r *reader) run() error {
	for {
		tok, err := r.d.Token()
		if err == io.EOF {
			if !r.root {
				return &Error{Line: r.line(), Err: fmt.Errorf("%w: no nmaprun element", ErrNotNmap)}
			}
			return nil
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) && strings.Contains(se.Msg, "unexpected EOF") && r.root {
				r.truncated()
				return nil
			}
			if errors.As(err, &se) {
				return &Error{Line: se.Line, Err: errors.New(se.Msg)}
			}
			return &Error{Line: r.line(), Err: err}
		}
		switch t := tok.(type) {
		case xml.StartElement:
			for _, a := range t.Attr {
				if len(a.Value) > MaxAttr {
					return r.errf(t.Name.Local+"/"+a.Name.Local, a.Value[:64], "value of %d bytes, limit %d", len(a.Value), MaxAttr)
				}
			}
			if err := r.start(t); err != nil {
				return err
			}
		case xml.EndElement:
			if err := r.end(t); err != nil {
				return err
			}
		case xml.CharData:
			if r.cpe != nil {
				if r.cpe.Len()+len(t) > MaxAttr {
					return r.errf("cpe", string(t[:min(len(t), 64)]), "text longer than %d bytes", MaxAttr)
				}
				r.cpe.Write(t)
			}
		}
	}
}

// truncated ends a document cut short: the unfinished host is dropped.
func (r *reader) truncated() {
	r.host, r.port, r.svc, r.cpe = nil, nil, nil, nil
	r.done = false
	r.snap.Complete = false
}

func attr(t xml.StartElement, name string) (string, bool) {
	for _, a := range t.Attr {
		if a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

func (r *reader) unix(t xml.StartElement, name string) (int64, bool, error) {
	v, ok := attr(t, name)
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > 1<<40 {
		return 0, false, r.errf(t.Name.Local+"/"+name, v, "not a time in seconds since 1970")
	}
	return n, true, nil
}

var portStates = map[string]bool{"open": true, "closed": true, "filtered": true, "unfiltered": true,
	"open|filtered": true, "closed|filtered": true}

func (r *reader) start(t xml.StartElement) error {
	name := t.Name.Local
	if !r.root {
		if name != "nmaprun" {
			return r.errf("", "", "%w: root element <%s>", ErrNotNmap, name)
		}
		r.root = true
		if n, ok, err := r.unix(t, "start"); err != nil {
			return err
		} else if ok {
			r.snap.StartedAt = unixTime(n)
		}
		return nil
	}
	switch name {
	case "host":
		if r.host != nil {
			return r.errf("host", "", "host inside host")
		}
		r.host = &snapshot.Host{State: snapshot.HostUp, Ports: []snapshot.Port{}}
		if n, ok, err := r.unix(t, "starttime"); err != nil {
			return err
		} else if ok && r.snap.StartedAt.IsZero() {
			r.snap.StartedAt = unixTime(n)
		}
	case "status":
		if r.host == nil {
			return nil
		}
		v, _ := attr(t, "state")
		switch v {
		case "up":
			r.host.State = snapshot.HostUp
		case "down", "unknown", "skipped":
			r.host.State = snapshot.HostDown
		default:
			return r.errf("status/state", v, "want up, down, unknown or skipped")
		}
	case "address":
		if r.host == nil {
			return nil
		}
		v, _ := attr(t, "addr")
		typ, _ := attr(t, "addrtype")
		if typ == "mac" {
			return nil
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return r.errf("address/addr", v, "not an IP address")
		}
		if r.host.Address == "" {
			r.host.Address = a.Unmap().String()
		}
	case "hostname":
		if r.host == nil || r.host.Hostname != "" {
			return nil
		}
		v, _ := attr(t, "name")
		r.host.Hostname = textsafe.Clean(v, fieldLimit)
	case "port":
		if r.host == nil {
			return r.errf("port", "", "port outside host")
		}
		proto, _ := attr(t, "protocol")
		if proto != "tcp" && proto != "udp" {
			return r.errf("port/protocol", proto, "want tcp or udp")
		}
		id, _ := attr(t, "portid")
		n, err := strconv.ParseUint(id, 10, 16)
		if err != nil || n == 0 {
			return r.errf("port/portid", id, "want a port number 1-65535")
		}
		r.port = &snapshot.Port{Port: uint16(n), Protocol: proto}
	case "state":
		if r.port == nil {
			return nil
		}
		v, _ := attr(t, "state")
		if !portStates[v] {
			return r.errf("state/state", v, "not a port state")
		}
		r.port.State = v
	case "service":
		if r.port == nil {
			return nil
		}
		get := func(k string) string { v, _ := attr(t, k); return textsafe.Clean(v, fieldLimit) }
		r.svcTable = false
		r.svc = &snapshot.Service{Name: get("name"), Product: get("product"), Version: get("version"),
			Info: get("extrainfo"), Tunnel: get("tunnel"), CPE: []string{}}
		if m, _ := attr(t, "method"); m == "table" {
			// A name from the port table, not a detection.
			r.svcTable = true
		}
	case "cpe":
		if r.svc != nil {
			r.cpe = &strings.Builder{}
		}
	case "script":
		id, _ := attr(t, "id")
		if r.svc != nil && !r.svcTable && id == DetectionScript {
			r.svc.Incomplete = true
		}
	case "extraports":
		if r.host == nil {
			return nil
		}
		st, _ := attr(t, "state")
		c, _ := attr(t, "count")
		n, err := strconv.ParseUint(c, 10, 32)
		if err != nil || n > 65536*2 {
			return r.errf("extraports/count", c, "want a count of ports")
		}
		switch st {
		case "closed":
			r.snap.Quality.Closed += n
		case "filtered", "open|filtered":
			r.snap.Quality.Filtered += n
		}
		r.extra = &extraElem{state: st, count: n}
	case "extrareasons":
		if r.host == nil || r.extra == nil {
			return nil
		}
		proto, _ := attr(t, "proto")
		c, _ := attr(t, "count")
		n, err := strconv.ParseUint(c, 10, 32)
		if err != nil || n > r.extra.count-r.extra.given {
			return r.errf("extrareasons/count", c, "want a count of at most the extraports' %d", r.extra.count-r.extra.given)
		}
		if proto == "tcp" || proto == "udp" {
			if r.host.Unlisted.Add(proto, r.extra.state, uint32(n)) {
				r.extra.given += n
			}
		}
	case "finished":
		if n, ok, err := r.unix(t, "time"); err != nil {
			return err
		} else if ok {
			r.snap.FinishedAt = unixTime(n)
		}
		exit, _ := attr(t, "exit")
		r.done = exit != "error"
	}
	return nil
}

func (r *reader) end(t xml.EndElement) error {
	switch t.Name.Local {
	case "extraports":
		// Without a protocol (nmap before 7.90 wrote none) the ports are
		// TCP's, the protocol of nmap's default scan.
		if e := r.extra; e != nil && r.host != nil && e.count > e.given {
			r.host.Unlisted.Add("tcp", e.state, uint32(e.count-e.given))
		}
		r.extra = nil
	case "cpe":
		if r.cpe != nil && r.svc != nil {
			if c := textsafe.Clean(r.cpe.String(), fieldLimit); c != "" {
				r.svc.CPE = append(r.svc.CPE, c)
			}
		}
		r.cpe = nil
	case "port":
		p := r.port
		r.port = nil
		if p == nil || r.host == nil {
			return nil
		}
		if p.State == "" {
			return r.errf("port", strconv.Itoa(int(p.Port)), "port without state")
		}
		if r.svc != nil && !r.svcTable {
			s := *r.svc
			p.Service = &s
		}
		r.svc = nil
		if p.State == snapshot.StateClosed {
			r.snap.Quality.Closed++
			r.host.Unlisted.Add(p.Protocol, p.State, 1)
			return nil
		}
		r.host.Ports = append(r.host.Ports, *p)
	case "host":
		h := r.host
		r.host = nil
		if h == nil {
			return nil
		}
		if h.Address == "" {
			return r.errf("host", "", "host without an IP address")
		}
		if h.State == snapshot.HostUp || len(h.Ports) > 0 {
			r.snap.Hosts = append(r.snap.Hosts, *h)
		}
	case "nmaprun":
		r.snap.Complete = r.done
	}
	return nil
}
