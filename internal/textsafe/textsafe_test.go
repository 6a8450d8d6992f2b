package textsafe

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestClean(t *testing.T) {
	tests := []struct {
		in    string
		limit int
		want  string
	}{
		{"OpenSSH", 64, "OpenSSH"},
		{"", 64, ""},
		{"a\x00b\x1bc\x7f", 64, "a b c"},
		{"  many   spaces\r\n", 64, "many spaces"},
		{"bad \xff utf8", 64, "bad ? utf8"},
		{"bad\xff\xfeutf8", 64, "bad??utf8"},
		{"tab\there", 64, "tab here"},
		{"line\u2028sep\u2029end", 64, "line sep end"},
		{"evil\u202egnp.exe", 64, "evil gnp.exe"},   // bidi override
		{"zero\u200bwidth", 64, "zero width"},       // zero-width space (Cf)
		{"bell\x07 esc\x1b[2J", 64, "bell esc [2J"}, // terminal escape loses its ESC
		{"é ünï", 64, "é ünï"},
		{"0123456789", 10, "0123456789"},
		{"0123456789A", 10, "0123456..."},
		{"01234 6789é", 10, "01234 6..."},
		{"01234  789é", 10, "01234 7..."},
		{"0123456 89", 10, "0123456 89"},
		{"0123456 89AB", 10, "0123456..."},
		{"éééééé", 10, "ééé..."},
		{strings.Repeat("x", 200), 128, strings.Repeat("x", 125) + "..."},
		{"abcdef", 1, "a..."},
	}
	for _, tt := range tests {
		got := Clean(tt.in, tt.limit)
		require.Equal(t, tt.want, got, "Clean(%q, %d)", tt.in, tt.limit)
		require.LessOrEqual(t, len(got), max(tt.limit, len(Marker)+1))
		require.True(t, utf8.ValidString(got))
		require.Equal(t, got, Clean(got, tt.limit), "Clean is idempotent")
	}
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"OpenSSH 9.2p1", "a\x00b\x1b[31m", "\xff\xfe", "é\u202e\u2028 x", strings.Repeat("é", 100)} {
		f.Add(s, 16)
	}
	f.Fuzz(func(t *testing.T, s string, limit int) {
		limit = limit % 1024
		got := Clean(s, limit)
		if len(got) > max(limit, len(Marker)+1) {
			t.Fatalf("Clean(%q, %d) = %q: longer than the limit", s, limit, got)
		}
		if !utf8.ValidString(got) {
			t.Fatalf("Clean(%q, %d) = %q: invalid UTF-8", s, limit, got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == '\u202e' || r == '\u2028' {
				t.Fatalf("Clean(%q, %d) = %q: keeps %U", s, limit, got, r)
			}
		}
		if strings.HasPrefix(got, " ") || strings.HasSuffix(got, " ") || strings.Contains(got, "  ") {
			t.Fatalf("Clean(%q, %d) = %q: spaces not collapsed", s, limit, got)
		}
		if again := Clean(got, limit); again != got {
			t.Fatalf("Clean not idempotent: %q -> %q -> %q", s, got, again)
		}
	})
}
