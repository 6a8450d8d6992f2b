package service

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// nmap's defaults for probes that do not set them.
const (
	defaultTotalWait  = 5 * time.Second
	defaultTCPWrapped = 2 * time.Second
	defaultRarity     = 5
	maxLineLen        = 1 << 20
)

// ParseError is a syntax error in a probe file. It names the file and line.
type ParseError struct {
	File   string
	Line   int
	Reason string
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason) }

// DB is a parsed probe database: one or more files in the nmap-service-probes
// format, merged in the order they were added.
type DB struct {
	Probes  []*Probe
	Exclude PortSet
	byName  map[string]*Probe
}

// Probe is one `Probe` block: what to send and how to read the answer.
type Probe struct {
	Protocol   string // TCP or UDP
	Name       string
	Payload    []byte
	NoPayload  bool
	Ports      PortSet
	SSLPorts   PortSet
	Rarity     int
	TotalWait  time.Duration
	TCPWrapped time.Duration
	Fallback   []string
	Matches    []*Match
	File       string
	Line       int

	fallbacks []*Probe // resolved Fallback, then NULL for TCP probes
}

// IsNull reports whether p is the banner-grab probe that sends nothing.
func (p *Probe) IsNull() bool { return len(p.Payload) == 0 && p.Name == "NULL" }

// PortSet is a set of port ranges as written in `ports` lines.
type PortSet struct{ r [][2]uint16 }

// Contains reports whether port is in the set.
func (s PortSet) Contains(port uint16) bool {
	for _, r := range s.r {
		if port >= r[0] && port <= r[1] {
			return true
		}
	}
	return false
}

// Empty reports whether the set holds no port.
func (s PortSet) Empty() bool { return len(s.r) == 0 }

func (s *PortSet) add(o PortSet) { s.r = append(s.r, o.r...) }

// parsePorts reads "21,80-90,T:443,U:53". Protocol prefixes (Exclude lines
// use them) select TCP only; UDP ranges are dropped because detection is TCP.
func parsePorts(v string) (PortSet, error) {
	var s PortSet
	tcp := true
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			return s, fmt.Errorf("empty port in %q", v)
		}
		switch {
		case strings.HasPrefix(f, "T:"):
			tcp, f = true, f[2:]
		case strings.HasPrefix(f, "U:"):
			tcp, f = false, f[2:]
		case strings.HasPrefix(f, "S:"):
			tcp, f = false, f[2:]
		}
		lo, hi, ok := strings.Cut(f, "-")
		if !ok {
			hi = lo
		}
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b, err2 := strconv.ParseUint(hi, 10, 16)
		if err1 != nil || err2 != nil {
			return s, fmt.Errorf("bad port %q", f)
		}
		if b < a {
			return s, fmt.Errorf("bad port range %q: end before start", f)
		}
		if tcp {
			s.r = append(s.r, [2]uint16{uint16(a), uint16(b)})
		}
	}
	return s, nil
}

// NewDB returns an empty database; add files with Add.
func NewDB() *DB { return &DB{byName: map[string]*Probe{}} }

// Add parses one probe file and merges it into db. A probe whose protocol and
// name already exist gets the new matches appended after the old ones, and
// the new file's directives override the old ones where it sets them; this
// lets an operator file extend the embedded NULL or GetRequest probes.
func (db *DB) Add(name string, r io.Reader) error {
	probes, excl, err := parseFile(name, r)
	if err != nil {
		return err
	}
	db.Exclude.add(excl)
	for _, p := range probes {
		key := p.Protocol + "/" + p.Name
		old, ok := db.byName[key]
		if !ok {
			db.byName[key] = p
			db.Probes = append(db.Probes, p)
			continue
		}
		old.Matches = append(old.Matches, p.Matches...)
		if !p.Ports.Empty() {
			old.Ports = p.Ports
		}
		if !p.SSLPorts.Empty() {
			old.SSLPorts = p.SSLPorts
		}
		if len(p.Fallback) > 0 {
			old.Fallback = p.Fallback
		}
	}
	return db.resolve()
}

// resolve links fallback names to probes. nmap makes the NULL probe an
// implicit last fallback of every TCP probe, since a banner often arrives
// before the reply to whatever was sent.
func (db *DB) resolve() error {
	null := db.byName["TCP/NULL"]
	for _, p := range db.Probes {
		p.fallbacks = p.fallbacks[:0]
		for _, n := range p.Fallback {
			// Same protocol first; nmap's own file has a TCP probe fall
			// back on the UDP probe of the same protocol's matches.
			f, ok := db.byName[p.Protocol+"/"+n]
			if !ok {
				f, ok = db.byName["TCP/"+n]
			}
			if !ok {
				f, ok = db.byName["UDP/"+n]
			}
			if !ok {
				return &ParseError{File: p.File, Line: p.Line, Reason: fmt.Sprintf("probe %s: fallback %q names no probe", p.Name, n)}
			}
			p.fallbacks = append(p.fallbacks, f)
		}
		if p.Protocol == "TCP" && null != nil && p != null {
			p.fallbacks = append(p.fallbacks, null)
		}
	}
	return nil
}

// Probe returns the probe of that protocol ("TCP", "UDP") and name.
func (db *DB) Probe(protocol, name string) *Probe { return db.byName[protocol+"/"+name] }

// Counts returns the numbers of probes, hard matches and softmatches.
func (db *DB) Counts() (probes, matches, softmatches int) {
	for _, p := range db.Probes {
		probes++
		for _, m := range p.Matches {
			if m.Soft {
				softmatches++
			} else {
				matches++
			}
		}
	}
	return
}

func parseFile(name string, r io.Reader) ([]*Probe, PortSet, error) {
	var (
		probes []*Probe
		excl   PortSet
		cur    *Probe
		seen   = map[string]bool{}
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxLineLen)
	line := 0
	fail := func(format string, a ...any) error {
		return &ParseError{File: name, Line: line, Reason: fmt.Sprintf(format, a...)}
	}
	for sc.Scan() {
		line++
		text := bytes.TrimRight(sc.Bytes(), "\r")
		text = bytes.TrimLeft(text, " \t")
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		word, rest := splitWord(string(text))
		if word != "Probe" && word != "Exclude" && cur == nil {
			return nil, excl, fail("%s directive before the first Probe", word)
		}
		switch word {
		case "Exclude":
			if cur != nil {
				return nil, excl, fail("Exclude must come before the first Probe")
			}
			ps, err := parsePorts(rest)
			if err != nil {
				return nil, excl, fail("Exclude: %v", err)
			}
			excl.add(ps)
		case "Probe":
			p, err := parseProbeLine(rest)
			if err != nil {
				return nil, excl, fail("Probe: %v", err)
			}
			if seen[p.Protocol+"/"+p.Name] {
				return nil, excl, fail("Probe: duplicate probe %s %s", p.Protocol, p.Name)
			}
			seen[p.Protocol+"/"+p.Name] = true
			p.File, p.Line = name, line
			probes = append(probes, p)
			cur = p
		case "match", "softmatch":
			m, err := parseMatch(rest, word == "softmatch")
			if err != nil {
				return nil, excl, fail("%s: %v", word, err)
			}
			m.File, m.Line, m.Probe = name, line, cur.Name
			cur.Matches = append(cur.Matches, m)
		case "ports", "sslports":
			ps, err := parsePorts(rest)
			if err != nil {
				return nil, excl, fail("%s: %v", word, err)
			}
			if word == "ports" {
				cur.Ports.add(ps)
			} else {
				cur.SSLPorts.add(ps)
			}
		case "rarity":
			n, err := strconv.Atoi(rest)
			if err != nil || n < 1 || n > 9 {
				return nil, excl, fail("rarity: %q is not a number from 1 to 9", rest)
			}
			cur.Rarity = n
		case "totalwaitms", "tcpwrappedms":
			n, err := strconv.Atoi(rest)
			if err != nil || n < 1 || n > 600000 {
				return nil, excl, fail("%s: %q is not a number of milliseconds from 1 to 600000", word, rest)
			}
			if word == "totalwaitms" {
				cur.TotalWait = time.Duration(n) * time.Millisecond
			} else {
				cur.TCPWrapped = time.Duration(n) * time.Millisecond
			}
		case "fallback":
			for _, f := range strings.Split(rest, ",") {
				f = strings.TrimSpace(f)
				if f == "" {
					return nil, excl, fail("fallback: empty probe name in %q", rest)
				}
				cur.Fallback = append(cur.Fallback, f)
			}
		default:
			return nil, excl, fail("unknown directive %q", word)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			line++
			return nil, excl, fail("line longer than %d bytes", maxLineLen)
		}
		return nil, excl, fmt.Errorf("read %s: %w", name, err)
	}
	return probes, excl, nil
}

func splitWord(s string) (string, string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i+1:])
}

// parseProbeLine reads `TCP GetRequest q|GET / HTTP/1.0\r\n\r\n| [no-payload]`.
func parseProbeLine(s string) (*Probe, error) {
	proto, rest := splitWord(s)
	if proto != "TCP" && proto != "UDP" {
		return nil, fmt.Errorf("protocol %q is neither TCP nor UDP", proto)
	}
	name, rest := splitWord(rest)
	if name == "" {
		return nil, errors.New("missing probe name")
	}
	if len(rest) < 3 || rest[0] != 'q' {
		return nil, errors.New("missing probe string q|...|")
	}
	delim := rest[1]
	end := strings.IndexByte(rest[2:], delim)
	if end < 0 {
		return nil, fmt.Errorf("probe string not terminated by %q", delim)
	}
	payload, err := unescape(rest[2 : 2+end])
	if err != nil {
		return nil, fmt.Errorf("probe string: %w", err)
	}
	p := &Probe{Protocol: proto, Name: name, Payload: payload, Rarity: defaultRarity,
		TotalWait: defaultTotalWait, TCPWrapped: defaultTCPWrapped}
	switch tail := strings.TrimSpace(rest[3+end:]); tail {
	case "":
	case "no-payload":
		p.NoPayload = true
	default:
		return nil, fmt.Errorf("unexpected %q after probe string", tail)
	}
	return p, nil
}

// The one-letter escapes of probe strings and the bytes they stand for.
const (
	escapeNames = "0abfnrtv"
	escapeBytes = "\x00\a\b\f\n\r\t\v"
)

// unescape decodes a probe string: \\ \0 \a \b \f \n \r \t \v \xHH, and any
// other punctuation escaped as itself, as nmap does. An escaped letter or
// digit other than those is an error (nmap has no octal escapes).
func unescape(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(s) {
			return nil, errors.New("trailing backslash")
		}
		c = s[i]
		if j := strings.IndexByte(escapeNames, c); j >= 0 {
			out = append(out, escapeBytes[j])
			continue
		}
		switch c {
		case 'x':
			if !isHex(s, i+1) || !isHex(s, i+2) {
				return nil, fmt.Errorf("bad \\x escape at byte %d", i-1)
			}
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			out = append(out, byte(v))
			i += 2
		default:
			if isAlnum(c) {
				return nil, fmt.Errorf("unknown escape \\%c", c)
			}
			out = append(out, c)
		}
	}
	return out, nil
}

func isHex(s string, i int) bool {
	if i >= len(s) {
		return false
	}
	c := s[i]
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// parseMatch reads `ssh m|^SSH-([\d.]+)-OpenSSH_(\S+)|s p/OpenSSH/ v/$2/ cpe:/a:openbsd:openssh:$2/`.
// As in nmap, a field ends at the next occurrence of its delimiter: there is
// no escaping of the delimiter inside it.
func parseMatch(s string, soft bool) (*Match, error) {
	svc, rest := splitWord(s)
	if svc == "" {
		return nil, errors.New("missing service name")
	}
	m := &Match{Soft: soft, Service: svc}
	if len(rest) < 3 || rest[0] != 'm' {
		return nil, errors.New("missing pattern m/.../")
	}
	delim := rest[1]
	end := strings.IndexByte(rest[2:], delim)
	if end < 0 {
		return nil, fmt.Errorf("pattern not terminated by %q", delim)
	}
	m.Pattern = rest[2 : 2+end]
	rest = rest[3+end:]
	for len(rest) > 0 && rest[0] != ' ' && rest[0] != '\t' {
		switch rest[0] {
		case 'i':
			m.IgnoreCase = true
		case 's':
			m.Singleline = true
		default:
			return nil, fmt.Errorf("unknown pattern flag %q", rest[0])
		}
		rest = rest[1:]
	}
	for {
		rest = strings.TrimLeft(rest, " \t")
		if rest == "" {
			return m, m.checkTemplates()
		}
		var field string
		switch {
		case strings.HasPrefix(rest, "cpe:"):
			field, rest = "cpe", rest[4:]
		case len(rest) >= 2 && strings.IndexByte("pvihod", rest[0]) >= 0:
			field, rest = rest[:1], rest[1:]
		default:
			return nil, fmt.Errorf("unknown version field at %q", trunc(rest, 20))
		}
		if len(rest) < 2 {
			return nil, fmt.Errorf("version field %s: missing value", field)
		}
		delim := rest[0]
		end := strings.IndexByte(rest[1:], delim)
		if end < 0 {
			return nil, fmt.Errorf("version field %s: not terminated by %q", field, delim)
		}
		val := rest[1 : 1+end]
		rest = rest[2+end:]
		if field == "cpe" {
			if len(rest) > 0 && rest[0] == 'a' {
				rest = rest[1:]
			}
			m.CPE = append(m.CPE, val)
			continue
		}
		if len(rest) > 0 && rest[0] != ' ' && rest[0] != '\t' {
			return nil, fmt.Errorf("version field %s: unexpected %q after value", field, rest[0])
		}
		dst := map[string]*string{"p": &m.Product, "v": &m.Version, "i": &m.Info, "h": &m.Hostname, "o": &m.OS, "d": &m.Device}[field]
		if *dst != "" {
			return nil, fmt.Errorf("version field %s given twice", field)
		}
		*dst = val
	}
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// checkTemplates reports template syntax errors at parse time.
func (m *Match) checkTemplates() error {
	for _, t := range append([]string{m.Product, m.Version, m.Info, m.Hostname, m.OS, m.Device}, m.CPE...) {
		if _, err := substitute(t, nil); err != nil {
			return err
		}
	}
	return nil
}
