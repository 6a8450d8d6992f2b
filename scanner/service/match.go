package service

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dlclark/regexp2"
)

// Match is one `match` or `softmatch` line.
type Match struct {
	Soft       bool
	Service    string
	Pattern    string
	IgnoreCase bool
	Singleline bool
	// Version templates, with $1..$9, $P(n), $SUBST(n,"a","b") and $I(n,">").
	Product, Version, Info, Hostname, OS, Device string
	CPE                                          []string
	Probe                                        string
	File                                         string
	Line                                         int

	once       sync.Once
	reportOnce sync.Once
	re         *regexp2.Regexp
	err        error
}

// compile builds the regex once, on first use: a full nmap file holds some
// 12,000 patterns and most are never needed. nmap's patterns are PCRE; the
// closest regexp2 mode is its default (.NET) syntax, with s -> Singleline and
// i -> IgnoreCase. Pattern bytes map one to one onto runes, like responses.
func (m *Match) compile(timeout time.Duration) (*regexp2.Regexp, error) {
	m.once.Do(func() {
		opt := regexp2.None
		if m.IgnoreCase {
			opt |= regexp2.IgnoreCase
		}
		if m.Singleline {
			opt |= regexp2.Singleline
		}
		re, err := regexp2.Compile(string(bytesToRunes([]byte(m.Pattern))), opt)
		if err != nil {
			m.err = fmt.Errorf("%s:%d: compile %s pattern: %w", m.File, m.Line, m.Service, err)
			return
		}
		re.MatchTimeout = timeout
		m.re = re
	})
	return m.re, m.err
}

// errTimeout marks a pattern that ran past its match timeout.
var errTimeout = errors.New("match timeout")

// exec runs the pattern against the response runes and returns the captured
// groups as bytes (index 0 is the whole match), nil when it does not match.
func (m *Match) exec(resp []rune, timeout time.Duration) ([][]byte, error) {
	re, err := m.compile(timeout)
	if err != nil {
		return nil, err
	}
	res, err := re.FindRunesMatch(resp)
	if err != nil {
		return nil, fmt.Errorf("%s:%d: %w: %w", m.File, m.Line, errTimeout, err)
	}
	if res == nil {
		return nil, nil
	}
	groups := res.Groups()
	out := make([][]byte, 10)
	for i := 0; i < len(groups) && i < 10; i++ {
		if len(groups[i].Captures) == 0 {
			continue
		}
		out[i] = runesToBytes(groups[i].Runes())
	}
	return out, nil
}

// sum hashes which pattern matched and the service, product and version
// it filled in from the bytes it captured: the reply's part of a Check.
// Not the whole match (group 0): patterns that read up to a page title span
// the Date header and session cookies of an HTTP reply, and Exim's banner
// carries the time. Not the info either: a server that sends its headers
// and its page in two writes is matched on whatever has arrived, with the
// title or without it, so the info can differ from one connection to the
// next while the service does not.
func (m *Match) sum(f Fields) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s:%d", m.File, m.Line)
	var n [4]byte
	for _, s := range []string{f.Service, f.Product, f.Version} {
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	return h.Sum64()
}

// bytesToRunes maps every byte to the rune of the same value, so that \xff in
// a pattern matches the byte 0xff and binary responses never hit UTF-8
// decoding.
func bytesToRunes(b []byte) []rune {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return r
}

func runesToBytes(r []rune) []byte {
	b := make([]byte, len(r))
	for i, c := range r {
		b[i] = byte(c)
	}
	return b
}

// Fields are the filled-in version templates of a match.
type Fields struct {
	Service, Product, Version, Info, Hostname, OS, Device string
	CPE                                                   []string
	// matched is a hard match's Match.sum, the reply's part of a Check.
	matched uint64
}

// fill substitutes the captured groups into m's templates.
func (m *Match) fill(groups [][]byte) (Fields, error) {
	f := Fields{Service: m.Service}
	var err error
	for _, t := range []struct {
		dst *string
		src string
	}{{&f.Product, m.Product}, {&f.Version, m.Version}, {&f.Info, m.Info}, {&f.Hostname, m.Hostname}, {&f.OS, m.OS}, {&f.Device, m.Device}} {
		if *t.dst, err = substitute(t.src, groups); err != nil {
			return f, fmt.Errorf("%s:%d: %w", m.File, m.Line, err)
		}
	}
	for _, c := range m.CPE {
		v, err := substitute(c, groups)
		if err != nil {
			return f, fmt.Errorf("%s:%d: %w", m.File, m.Line, err)
		}
		f.CPE = append(f.CPE, "cpe:/"+v)
	}
	return f, nil
}

// substitute expands a version template: $1..$9 insert a group, $P(n) its
// printable characters, $SUBST(n,"from","to") the group with every "from"
// replaced, $I(n,">") or $I(n,"<") the group read as a big- or little-endian
// unsigned integer of up to 8 bytes. A group that did not take part in the
// match expands to nothing.
func substitute(tmpl string, groups [][]byte) (string, error) {
	if !strings.Contains(tmpl, "$") {
		return tmpl, nil
	}
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		if c != '$' || i+1 >= len(tmpl) {
			b.WriteByte(c)
			continue
		}
		rest := tmpl[i+1:]
		switch {
		case rest[0] >= '1' && rest[0] <= '9':
			b.Write(group(groups, int(rest[0]-'0')))
			i++
		case strings.HasPrefix(rest, "P("), strings.HasPrefix(rest, "SUBST("), strings.HasPrefix(rest, "I("):
			name, args, n, err := parseCall(rest)
			if err != nil {
				return "", fmt.Errorf("template %q: %w", tmpl, err)
			}
			i += n
			g := group(groups, args.n)
			switch name {
			case "P":
				for _, ch := range g {
					if ch >= 0x20 && ch < 0x7f {
						b.WriteByte(ch)
					}
				}
			case "SUBST":
				b.WriteString(strings.ReplaceAll(string(g), args.a, args.b))
			case "I":
				if len(g) > 8 {
					return "", fmt.Errorf("template %q: $I of %d bytes, at most 8", tmpl, len(g))
				}
				var buf [8]byte
				var v uint64
				if args.a == ">" {
					copy(buf[8-len(g):], g)
					v = binary.BigEndian.Uint64(buf[:])
				} else {
					copy(buf[:], g)
					v = binary.LittleEndian.Uint64(buf[:])
				}
				b.WriteString(strconv.FormatUint(v, 10))
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func group(groups [][]byte, n int) []byte {
	if n < len(groups) {
		return groups[n]
	}
	return nil
}

type callArgs struct {
	n    int
	a, b string
}

// parseCall reads `P(1)`, `SUBST(1,"_",".")` or `I(1,">")` at the start of s
// and returns how many bytes of s it used.
func parseCall(s string) (string, callArgs, int, error) {
	var a callArgs
	open := strings.IndexByte(s, '(')
	name := s[:open]
	i := open + 1
	if i >= len(s) || s[i] < '1' || s[i] > '9' {
		return "", a, 0, fmt.Errorf("$%s: group number 1-9 expected", name)
	}
	a.n = int(s[i] - '0')
	i++
	var strs []string
	for i < len(s) && s[i] == ',' {
		i++
		for i < len(s) && s[i] == ' ' {
			i++
		}
		if i >= len(s) || s[i] != '"' {
			return "", a, 0, fmt.Errorf("$%s: quoted argument expected", name)
		}
		end := strings.IndexByte(s[i+1:], '"')
		if end < 0 {
			return "", a, 0, fmt.Errorf("$%s: unterminated string", name)
		}
		strs = append(strs, s[i+1:i+1+end])
		i += end + 2
		for i < len(s) && s[i] == ' ' {
			i++
		}
	}
	if i >= len(s) || s[i] != ')' {
		return "", a, 0, fmt.Errorf("$%s: missing )", name)
	}
	want := map[string]int{"P": 0, "SUBST": 2, "I": 1}[name]
	if len(strs) != want {
		return "", a, 0, fmt.Errorf("$%s takes %d string arguments, got %d", name, want, len(strs))
	}
	switch name {
	case "SUBST":
		a.a, a.b = strs[0], strs[1]
	case "I":
		if strs[0] != ">" && strs[0] != "<" {
			return "", a, 0, fmt.Errorf(`$I: endianness must be ">" or "<", got %q`, strs[0])
		}
		a.a = strs[0]
	}
	return name, a, i + 1, nil
}
