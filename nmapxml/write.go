// Package nmapxml speaks nmap's XML output format (-oX, nmap.dtd): Write
// turns a snapshot into an nmaprun document that ndiff, nmap.xsl and the
// importers built on nmap XML read, and Read turns nmap XML (nmap's own or
// ours) back into a snapshot, treating the file as untrusted input.
//
// nmap.dtd allows only scanner="nmap", so documents carry that and name
// exposure in profile_name, args and version. What exposure knows beyond
// nmap's service element goes where nmap puts such data: the TLS
// certificate in an ssl-cert script, an inconclusive detection in an
// exposure-detection script. nmap's consumers show or ignore scripts.
package nmapxml

import (
	"cmp"
	"encoding/xml"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/exposure-monitor/exposure/snapshot"
)

// OutputVersion is nmap's xmloutputversion that the documents follow.
const OutputVersion = "1.05"

// Profile is written as nmaprun's profile_name: the mark of a document
// that exposure wrote.
const Profile = "exposure"

// DetectionScript is the id of the script element that flags a service
// detection cut short by its timeout (the "?" of the SERVICE column).
const DetectionScript = "exposure-detection"

// WriteOptions describe the run around a snapshot, which the snapshot
// itself does not hold.
type WriteOptions struct {
	// Args is the command line, for nmaprun's args.
	Args string
	// Version is exposure's version.
	Version string
	// ScanType is nmap's scaninfo type: "syn" or "connect".
	ScanType string
	// Ports are the TCP ports scanned, in order, for scaninfo; nil when
	// unknown (a stored snapshot), in which case scaninfo lists the ports
	// shown. A host's extraports come from its snapshot.Unlisted.
	Ports []uint16
	// UDPPorts are the UDP ports scanned; nil when none were or they are
	// unknown, in which case scaninfo lists the UDP ports shown, if any.
	UDPPorts []uint16
	// Scripts adds the ssl-cert and exposure-detection script elements.
	// Off by default: Debian's ndiff 7.93 crashes (a TypeError in
	// append_to_port_table) on a port whose columns are equal in both
	// files and whose scripts differ, as when one side is nmap's -sV.
	Scripts bool
	// PortName names a port's usual service (nmap's "table" method) for
	// ports without detection; nil leaves them unnamed.
	PortName func(port uint16) string
}

func (o *WriteOptions) validate() error {
	switch o.ScanType {
	case "":
		o.ScanType = "syn"
	case "syn", "connect":
	default:
		return fmt.Errorf("nmapxml: scan type %q: want syn or connect", o.ScanType)
	}
	o.Version = cmp.Or(o.Version, "dev")
	return nil
}

// The elements Write produces, in nmap.dtd's order.
type (
	xRun struct {
		XMLName   xml.Name    `xml:"nmaprun"`
		Scanner   string      `xml:"scanner,attr"`
		Args      string      `xml:"args,attr,omitempty"`
		Start     int64       `xml:"start,attr"`
		StartStr  string      `xml:"startstr,attr"`
		Version   string      `xml:"version,attr"`
		Profile   string      `xml:"profile_name,attr"`
		OutputVer string      `xml:"xmloutputversion,attr"`
		ScanInfo  []xScanInfo `xml:"scaninfo"`
		Verbose   xLevel      `xml:"verbose"`
		Debugging xLevel      `xml:"debugging"`
		Hosts     []xHost     `xml:"host"`
		RunStats  xRunStats   `xml:"runstats"`
	}
	xScanInfo struct {
		Type        string `xml:"type,attr"`
		Protocol    string `xml:"protocol,attr"`
		NumServices int    `xml:"numservices,attr"`
		Services    string `xml:"services,attr"`
	}
	xLevel struct {
		Level int `xml:"level,attr"`
	}
	xHost struct {
		StartTime int64      `xml:"starttime,attr,omitempty"`
		EndTime   int64      `xml:"endtime,attr,omitempty"`
		Status    xStatus    `xml:"status"`
		Address   xAddress   `xml:"address"`
		Hostnames xHostnames `xml:"hostnames"`
		Ports     *xPorts    `xml:"ports"`
	}
	xStatus struct {
		State     string `xml:"state,attr"`
		Reason    string `xml:"reason,attr"`
		ReasonTTL string `xml:"reason_ttl,attr"`
	}
	xAddress struct {
		Addr     string `xml:"addr,attr"`
		AddrType string `xml:"addrtype,attr"`
	}
	xHostnames struct {
		Names []xHostname `xml:"hostname"`
	}
	xHostname struct {
		Name string `xml:"name,attr"`
		Type string `xml:"type,attr"`
	}
	xPorts struct {
		Extra []xExtraPorts `xml:"extraports"`
		Ports []xPort       `xml:"port"`
	}
	xExtraPorts struct {
		State   string          `xml:"state,attr"`
		Count   int             `xml:"count,attr"`
		Reasons []xExtraReasons `xml:"extrareasons"`
	}
	xExtraReasons struct {
		Reason string `xml:"reason,attr"`
		Count  int    `xml:"count,attr"`
		Proto  string `xml:"proto,attr,omitempty"`
	}
	xPort struct {
		Protocol string    `xml:"protocol,attr"`
		PortID   uint16    `xml:"portid,attr"`
		State    xState    `xml:"state"`
		Service  *xService `xml:"service"`
		Scripts  []xScript `xml:"script"`
	}
	xState struct {
		State     string `xml:"state,attr"`
		Reason    string `xml:"reason,attr"`
		ReasonTTL string `xml:"reason_ttl,attr"`
	}
	xService struct {
		Name      string   `xml:"name,attr"`
		Product   string   `xml:"product,attr,omitempty"`
		Version   string   `xml:"version,attr,omitempty"`
		ExtraInfo string   `xml:"extrainfo,attr,omitempty"`
		Tunnel    string   `xml:"tunnel,attr,omitempty"`
		Method    string   `xml:"method,attr"`
		Conf      int      `xml:"conf,attr"`
		ServiceFP string   `xml:"servicefp,attr,omitempty"`
		CPE       []string `xml:"cpe"`
	}
	xScript struct {
		ID     string   `xml:"id,attr"`
		Output string   `xml:"output,attr"`
		Tables []xTable `xml:"table"`
		Elems  []xElem  `xml:"elem"`
	}
	xTable struct {
		Key   string  `xml:"key,attr,omitempty"`
		Elems []xElem `xml:"elem"`
	}
	xElem struct {
		Key   string `xml:"key,attr,omitempty"`
		Value string `xml:",chardata"`
	}
	xRunStats struct {
		Finished xFinished `xml:"finished"`
		Hosts    xHostsSum `xml:"hosts"`
	}
	xFinished struct {
		Time     int64  `xml:"time,attr"`
		TimeStr  string `xml:"timestr,attr"`
		Summary  string `xml:"summary,attr"`
		Elapsed  string `xml:"elapsed,attr"`
		Exit     string `xml:"exit,attr"`
		ErrorMsg string `xml:"errormsg,attr,omitempty"`
	}
	xHostsSum struct {
		Up    int `xml:"up,attr"`
		Down  int `xml:"down,attr"`
		Total int `xml:"total,attr"`
	}
)

// ctime is nmap's startstr and timestr layout (C's ctime, local time).
const ctime = "Mon Jan _2 15:04:05 2006"

// Write writes s as one nmap XML document.
func Write(w io.Writer, s *snapshot.Snapshot, o WriteOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	run := build(s, o)
	if _, err := io.WriteString(w, xml.Header+"<!DOCTYPE nmaprun>\n"+
		"<?xml-stylesheet href=\"file:///usr/share/nmap/nmap.xsl\" type=\"text/xsl\"?>\n"); err != nil {
		return fmt.Errorf("nmapxml: write: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", " ")
	if err := enc.Encode(run); err != nil {
		return fmt.Errorf("nmapxml: write: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("nmapxml: write: %w", err)
	}
	return nil
}

func build(s *snapshot.Snapshot, o WriteOptions) *xRun {
	run := &xRun{
		Scanner: "nmap", Args: o.Args, Start: s.StartedAt.Unix(),
		StartStr: s.StartedAt.Local().Format(ctime), Version: o.Version, Profile: Profile,
		OutputVer: OutputVersion,
	}
	ports := scanned(o.Ports, s, "tcp")
	udp := scanned(o.UDPPorts, s, "udp")
	if len(ports) > 0 || len(udp) == 0 {
		run.ScanInfo = []xScanInfo{{Type: o.ScanType, Protocol: "tcp", NumServices: len(ports), Services: Ranges(ports)}}
	}
	if len(udp) > 0 {
		run.ScanInfo = append(run.ScanInfo, xScanInfo{Type: "udp", Protocol: "udp", NumServices: len(udp), Services: Ranges(udp)})
	}
	up, down := 0, 0
	for _, h := range s.Hosts {
		if h.State == snapshot.HostUp {
			up++
		} else {
			down++
		}
		run.Hosts = append(run.Hosts, buildHost(s, h, o))
	}
	elapsed := s.FinishedAt.Sub(s.StartedAt).Seconds()
	fin := xFinished{
		Time: s.FinishedAt.Unix(), TimeStr: s.FinishedAt.Local().Format(ctime),
		Elapsed: strconv.FormatFloat(max(elapsed, 0), 'f', 2, 64), Exit: "success",
	}
	fin.Summary = fmt.Sprintf("Exposure done at %s; %d IP %s (%d %s up) scanned in %s seconds",
		fin.TimeStr, len(s.Hosts), plural(len(s.Hosts), "address", "addresses"), up, plural(up, "host", "hosts"), fin.Elapsed)
	if !s.Complete {
		fin.Exit, fin.ErrorMsg = "error", "scan cut short: the result is incomplete"
	}
	run.RunStats = xRunStats{Finished: fin, Hosts: xHostsSum{Up: up, Down: down, Total: up + down}}
	return run
}

func buildHost(s *snapshot.Snapshot, h snapshot.Host, o WriteOptions) xHost {
	xh := xHost{StartTime: s.StartedAt.Unix(), EndTime: s.FinishedAt.Unix(), Address: xAddress{Addr: h.Address, AddrType: "ipv4"}}
	if a, err := netip.ParseAddr(h.Address); err == nil && a.Unmap().Is6() {
		xh.Address.AddrType = "ipv6"
	}
	if h.Hostname != "" {
		xh.Hostnames.Names = []xHostname{{Name: h.Hostname, Type: "PTR"}}
	}
	if h.State != snapshot.HostUp {
		xh.Status = xStatus{State: "down", Reason: "no-response", ReasonTTL: "0"}
		return xh
	}
	xh.Status = xStatus{State: "up", Reason: "syn-ack", ReasonTTL: "0"}
	if !anyOpen(h) {
		xh.Status.Reason = "reset"
	}
	xp := &xPorts{Extra: extraPorts(h.Unlisted)}
	for _, p := range h.Ports {
		xp.Ports = append(xp.Ports, buildPort(p, o))
	}
	xh.Ports = xp
	return xh
}

// extraPorts are nmap's extraports of a host's unlisted ports: one per
// state, its extrareasons one per protocol, as nmap writes -sS -sU.
func extraPorts(u snapshot.Unlisted) []xExtraPorts {
	var out []xExtraPorts
	for _, st := range []string{snapshot.StateClosed, snapshot.StateFiltered, snapshot.StateOpenFiltered} {
		var e xExtraPorts
		for _, proto := range []string{"tcp", "udp"} {
			n := int(u.Count(proto, st))
			if n == 0 {
				continue
			}
			e.Count += n
			e.Reasons = append(e.Reasons, xExtraReasons{Reason: portReason(proto, st), Count: n, Proto: proto})
		}
		if e.Count > 0 {
			e.State = st
			out = append(out, e)
		}
	}
	return out
}

// portReason is nmap's reason for a port of protocol proto in state.
func portReason(proto, state string) string {
	why := reasons
	if proto == "udp" {
		why = udpReasons
	}
	return cmp.Or(why[state], "no-response")
}

func anyOpen(h snapshot.Host) bool {
	for _, p := range h.Ports {
		if p.State == snapshot.StateOpen {
			return true
		}
	}
	return false
}

// reasons are nmap's reason for each port state a SYN or connect scan
// sees.
var reasons = map[string]string{
	snapshot.StateOpen:     "syn-ack",
	snapshot.StateClosed:   "reset",
	snapshot.StateFiltered: "no-response",
}

// udpReasons are nmap -sU's reasons: an answer, an ICMP port unreachable,
// another ICMP unreachable, silence.
var udpReasons = map[string]string{
	snapshot.StateOpen:     "udp-response",
	snapshot.StateClosed:   "port-unreach",
	snapshot.StateFiltered: "admin-prohibited",
}

func buildPort(p snapshot.Port, o WriteOptions) xPort {
	xp := xPort{Protocol: p.Protocol, PortID: p.Port,
		State: xState{State: p.State, Reason: portReason(p.Protocol, p.State), ReasonTTL: "0"}}
	svc := p.Service
	if svc == nil || svc.Name == "" && svc.Product == "" {
		name := ""
		if o.PortName != nil {
			name = o.PortName(p.Port)
		}
		if name != "" && svc == nil {
			xp.Service = &xService{Name: name, Method: "table", Conf: 3}
			return xp
		}
		if svc == nil {
			return xp
		}
		xs := &xService{Name: cmp.Or(name, "unknown"), Method: "table", Conf: 3, Tunnel: svc.Tunnel, ServiceFP: svc.Fingerprint}
		xp.Service = xs
		if o.Scripts {
			xp.Scripts = scripts(svc)
		}
		return xp
	}
	xs := &xService{
		Name: cmp.Or(svc.Name, "unknown"), Product: svc.Product, Version: svc.Version, ExtraInfo: svc.Info,
		Tunnel: svc.Tunnel, Method: "probed", Conf: 10, ServiceFP: svc.Fingerprint, CPE: svc.CPE,
	}
	if xs.Tunnel != "" && xs.Tunnel != "ssl" {
		xs.Tunnel = "" // nmap.dtd knows only ssl
	}
	if svc.Incomplete {
		xs.Conf = 5
	}
	xp.Service = xs
	if o.Scripts {
		xp.Scripts = scripts(svc)
	}
	return xp
}

// scripts holds what exposure knows beyond the service element, in nmap's
// places: ssl-cert for the certificate (its keys as nmap's script writes
// them) and exposure-detection for a detection cut short.
func scripts(svc *snapshot.Service) []xScript {
	var out []xScript
	if c := svc.Cert; c != nil {
		var lines []string
		lines = append(lines, "Subject: "+c.Subject)
		if len(c.SANs) > 0 {
			lines = append(lines, "Subject Alternative Name: "+strings.Join(c.SANs, ", "))
		}
		lines = append(lines, "Issuer: "+c.Issuer,
			"Not valid before: "+c.NotBefore.UTC().Format("2006-01-02T15:04:05"),
			"Not valid after:  "+c.NotAfter.UTC().Format("2006-01-02T15:04:05"),
			"SHA-256: "+c.Fingerprint)
		sc := xScript{ID: "ssl-cert", Output: strings.Join(lines, "\n"),
			Tables: []xTable{
				{Key: "subject", Elems: []xElem{{Key: "commonName", Value: c.Subject}}},
				{Key: "issuer", Elems: []xElem{{Key: "commonName", Value: c.Issuer}}},
				{Key: "validity", Elems: []xElem{
					{Key: "notBefore", Value: c.NotBefore.UTC().Format("2006-01-02T15:04:05")},
					{Key: "notAfter", Value: c.NotAfter.UTC().Format("2006-01-02T15:04:05")},
				}},
			},
			Elems: []xElem{{Key: "sha256", Value: c.Fingerprint}},
		}
		if len(c.SANs) > 0 {
			t := xTable{Key: "extensions"}
			for _, s := range c.SANs {
				t.Elems = append(t.Elems, xElem{Key: "san", Value: s})
			}
			sc.Tables = append(sc.Tables, t)
		}
		out = append(out, sc)
	}
	if svc.Incomplete {
		out = append(out, xScript{ID: DetectionScript, Output: "incomplete: detection ran out of time with probes outstanding",
			Elems: []xElem{{Key: "incomplete", Value: "true"}}})
	}
	return out
}

// scanned returns the sorted, distinct ports of given, or, when given is
// nil, the ports of protocol proto that s lists.
func scanned(given []uint16, s *snapshot.Snapshot, proto string) []uint16 {
	if given == nil {
		return listedPorts(s, proto)
	}
	ports := slices.Clone(given)
	slices.Sort(ports)
	return slices.Compact(ports)
}

// listedPorts are the ports of protocol proto a snapshot lists, in order.
func listedPorts(s *snapshot.Snapshot, proto string) []uint16 {
	seen := map[uint16]bool{}
	for _, h := range s.Hosts {
		for _, p := range h.Ports {
			if p.Protocol == proto {
				seen[p.Port] = true
			}
		}
	}
	var out []uint16
	for p := 0; p <= 65535; p++ {
		if seen[uint16(p)] {
			out = append(out, uint16(p))
		}
	}
	return out
}

// Ranges writes sorted ports as nmap's scaninfo services: "22,80,443-445".
func Ranges(ports []uint16) string {
	var b strings.Builder
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(ports[i])))
		if j > i {
			b.WriteString("-" + strconv.Itoa(int(ports[j])))
		}
		i = j + 1
	}
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// unixTime reads nmap's seconds since 1970.
func unixTime(s int64) time.Time { return time.Unix(s, 0).UTC() }
