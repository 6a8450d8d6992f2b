// Package textsafe makes untrusted text (banners, HTTP headers, DNS
// answers, errors that quote them) safe to put into logs, metric labels,
// alerts and terminals. Every package that passes network-supplied text on
// uses Clean, so the rules are the same everywhere.
package textsafe

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Marker ends a string that Clean cut short.
const Marker = "..."

// Clean returns s with invalid UTF-8 replaced by '?', control and format
// characters (escape sequences, NUL, bidi overrides, zero-width marks) and
// line or paragraph separators turned into spaces, runs of white space
// collapsed into one space and both ends trimmed. The result is at most
// limit bytes: a longer one is cut on a rune boundary and ends in Marker,
// which counts toward the limit. A limit below len(Marker)+1 means len(Marker)+1.
func Clean(s string, limit int) string {
	n := max(limit, len(Marker)+1)
	if len(s) <= n && plain(s) {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), n))
	space := false // the last rune written was a space
	cut := false
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				r = '?'
			}
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' || unicode.IsSpace(r) {
			if space || b.Len() == 0 {
				continue
			}
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > n {
			cut = true
			break
		}
		b.WriteRune(r)
		space = r == ' '
	}
	out := strings.TrimRight(b.String(), " ")
	if !cut {
		return out
	}
	// Make room for the marker, on a rune boundary.
	for len(out)+len(Marker) > n {
		_, size := utf8.DecodeLastRuneInString(out)
		out = out[:len(out)-size]
	}
	return strings.TrimRight(out, " ") + Marker
}

// plain reports whether s is printable ASCII with single inner spaces and
// none at the ends: what Clean returns unchanged.
func plain(s string) bool {
	if s == "" {
		return true
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f || s[i] == ' ' && s[i-1] == ' ' {
			return false
		}
	}
	return true
}
