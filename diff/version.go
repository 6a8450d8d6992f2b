package diff

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// CompareVersions orders two version strings the way dpkg does (epoch,
// upstream version, Debian revision; `~` sorts before everything, letters
// before other symbols, digit runs numerically), after normalising what
// service detection reports: "9.2p1 Debian 2+deb12u10" becomes
// "9.2p1-2+deb12u10", a leading "v" is dropped and a semver pre-release
// ("1.4.0-rc1") sorts before its release ("1.4.0~rc1"). It returns -1, 0
// or 1.
func CompareVersions(a, b string) int {
	return compareDebian(normalizeVersion(a), normalizeVersion(b))
}

func normalizeVersion(v string) string {
	f := strings.Fields(v)
	if len(f) == 0 {
		return ""
	}
	up := f[0]
	if len(up) > 1 && (up[0] == 'v' || up[0] == 'V') && up[1] >= '0' && up[1] <= '9' {
		up = up[1:]
	}
	// Semver pre-release: 1.4.0-rc1, 2.0.0-beta.2 (a hyphen followed by a
	// letter). A Debian revision starts with a digit.
	if i := strings.IndexByte(up, '-'); i > 0 && i+1 < len(up) && isLetter(up[i+1]) && !strings.Contains(up[:i], ":") {
		up = up[:i] + "~" + up[i+1:]
	}
	// nmap prints the distribution revision after the upstream version:
	// "9.2p1 Debian 2+deb12u10", "8.9p1 Ubuntu 3ubuntu0.6".
	if len(f) >= 3 && isDistro(f[1]) && f[2] != "" && isDigit(f[2][0]) {
		up += "-" + f[2]
	}
	return up
}

func isDistro(s string) bool {
	switch strings.ToLower(s) {
	case "debian", "ubuntu", "raspbian", "deb":
		return true
	}
	return false
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func compareDebian(a, b string) int {
	ea, ua, ra := splitDebian(a)
	eb, ub, rb := splitDebian(b)
	if ea != eb {
		if ea < eb {
			return -1
		}
		return 1
	}
	if c := verrevcmp(ua, ub); c != 0 {
		return c
	}
	return verrevcmp(ra, rb)
}

func splitDebian(v string) (epoch int, upstream, revision string) {
	if i := strings.IndexByte(v, ':'); i > 0 {
		if n, err := strconv.Atoi(v[:i]); err == nil {
			epoch, v = n, v[i+1:]
		}
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

// order is dpkg's character weight: '~' lowest, then end of string and
// digits, then letters, then everything else.
func order(s string, i int) int {
	if i >= len(s) {
		return 0
	}
	c := s[i]
	switch {
	case isDigit(c):
		return 0
	case isLetter(c):
		return int(c)
	case c == '~':
		return -1
	default:
		return int(c) + 256
	}
}

// verrevcmp is dpkg's lib/dpkg/version.c verrevcmp.
func verrevcmp(a, b string) int {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ac, bc := order(a, i), order(b, j)
			if ac != bc {
				return sign(ac - bc)
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		firstDiff := 0
		for i < len(a) && isDigit(a[i]) && j < len(b) && isDigit(b[j]) {
			if firstDiff == 0 {
				firstDiff = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if i < len(a) && isDigit(a[i]) {
			return 1
		}
		if j < len(b) && isDigit(b[j]) {
			return -1
		}
		if firstDiff != 0 {
			return sign(firstDiff)
		}
	}
	return 0
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// Rule is a parsed expect.versions rule: comparisons that must all hold,
// e.g. ">= 9.0" or ">= 2.4.57, < 3".
type Rule struct {
	text  string
	terms []term
}

type term struct {
	op      string
	version string
}

// ruleOps are the operators of a version rule, two-character ones first so
// that ">=" is not read as ">".
var ruleOps = [...]string{">=", "<=", "!=", "==", "=", ">", "<"}

var versionRe = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+_~:-]*$`)

// ParseRule parses an expect.versions rule: one or more terms "OP VERSION"
// separated by commas, OP one of >=, >, <=, <, = (or ==) and !=, e.g.
// ">= 9.0", ">= 2.4, < 3", "!= 8.9p1". This is the one grammar of a rule:
// config validates with it. Errors give the reason only; callers name the
// rule.
func ParseRule(s string) (Rule, error) {
	if strings.TrimSpace(s) == "" {
		return Rule{}, errors.New("empty version rule")
	}
	r := Rule{text: strings.TrimSpace(s)}
	for part := range strings.SplitSeq(s, ",") {
		t, err := parseTerm(strings.TrimSpace(part))
		if err != nil {
			return Rule{}, err
		}
		r.terms = append(r.terms, t)
	}
	return r, nil
}

func parseTerm(t string) (term, error) {
	if t == "" {
		return term{}, errors.New("empty term between commas")
	}
	var op string
	for _, o := range ruleOps {
		if strings.HasPrefix(t, o) {
			op = o
			break
		}
	}
	if op == "" {
		return term{}, errors.New("version rule must start with an operator: >=, >, <=, <, = or !=")
	}
	ver := strings.TrimSpace(t[len(op):])
	switch {
	case ver == "":
		return term{}, fmt.Errorf("no version after %q", op)
	case strings.ContainsAny(ver, "<>=!"):
		return term{}, errors.New("one operator and one version per term (separate terms with commas)")
	case !versionRe.MatchString(ver) || !strings.ContainsAny(ver, "0123456789"):
		return term{}, fmt.Errorf("%q is not a version (digits, letters and . + _ ~ : -)", ver)
	}
	if op == "==" {
		op = "="
	}
	return term{op: op, version: ver}, nil
}

// String returns the rule as written.
func (r Rule) String() string { return r.text }

// Allows reports whether version satisfies every term of the rule.
func (r Rule) Allows(version string) bool {
	for _, t := range r.terms {
		c := CompareVersions(version, t.version)
		ok := false
		switch t.op {
		case ">=":
			ok = c >= 0
		case ">":
			ok = c > 0
		case "<=":
			ok = c <= 0
		case "<":
			ok = c < 0
		case "=":
			ok = c == 0
		case "!=":
			ok = c != 0
		}
		if !ok {
			return false
		}
	}
	return true
}
