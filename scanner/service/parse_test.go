package service

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseSample(t *testing.T) {
	f, err := os.Open("testdata/sample-probes")
	require.NoError(t, err)
	defer f.Close()
	db := NewDB()
	require.NoError(t, db.Add("sample-probes", f))

	require.True(t, db.Exclude.Contains(9101))
	require.False(t, db.Exclude.Contains(30001), "UDP exclusions do not apply to TCP")
	require.Len(t, db.Probes, 3)

	null := db.Probe("TCP", "NULL")
	require.NotNil(t, null)
	require.True(t, null.IsNull())
	require.Equal(t, 1500*time.Millisecond, null.TotalWait)
	require.Equal(t, 800*time.Millisecond, null.TCPWrapped)
	require.Len(t, null.Matches, 3)
	m := null.Matches[0]
	require.Equal(t, "fake", m.Service)
	require.Equal(t, `^FAKE ([\d.]+) on ([\w.-]+)\r\n`, m.Pattern)
	require.Equal(t, "Fake daemon", m.Product)
	require.Equal(t, "$1", m.Version)
	require.Equal(t, "$2", m.Hostname)
	require.Equal(t, "Linux", m.OS)
	require.Equal(t, "general purpose", m.Device)
	require.Equal(t, []string{"a:example:fake:$1", "o:linux:linux_kernel"}, m.CPE)
	require.Equal(t, "sample-probes", m.File)
	require.Equal(t, 6, m.Line)
	require.Equal(t, `^fake\|pipe`, null.Matches[1].Pattern, "any delimiter; a | inside needs another one")
	require.True(t, null.Matches[2].Soft)
	require.True(t, null.Matches[2].IgnoreCase)

	hello := db.Probe("TCP", "Hello")
	require.Equal(t, []byte("HELLO\r\n\x00\x01\xff\t\\|"), hello.Payload)
	require.True(t, hello.NoPayload)
	require.Equal(t, 3, hello.Rarity)
	require.Equal(t, defaultTotalWait, hello.TotalWait)
	require.True(t, hello.Ports.Contains(7001))
	require.True(t, hello.Ports.Contains(7010))
	require.False(t, hello.Ports.Contains(7003))
	require.True(t, hello.SSLPorts.Contains(7443))
	require.Equal(t, []string{"NULL"}, hello.Fallback)
	require.Equal(t, []*Probe{null, null}, hello.fallbacks, "explicit NULL fallback plus the implicit one")
	require.True(t, hello.Matches[0].Singleline)

	ping := db.Probe("UDP", "Ping")
	require.Equal(t, "UDP", ping.Protocol)
	require.Empty(t, ping.fallbacks, "UDP probes get no implicit TCP NULL fallback")

	probes, matches, soft := db.Counts()
	require.Equal(t, [3]int{3, 5, 1}, [3]int{probes, matches, soft})
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, file, want string
	}{
		{"directive before probe", "match x m|a|\n", "t.probes:1: match directive before the first Probe"},
		{"unknown directive", "Probe TCP NULL q||\nbogus 1\n", `t.probes:2: unknown directive "bogus"`},
		{"exclude after probe", "Probe TCP NULL q||\nExclude 80\n", "t.probes:2: Exclude must come before the first Probe"},
		{"exclude bad port", "Exclude T:99999\n", `t.probes:1: Exclude: bad port "99999"`},
		{"bad protocol", "\n# c\nProbe SCTP x q||\n", `t.probes:3: Probe: protocol "SCTP" is neither TCP nor UDP`},
		{"no name", "Probe TCP\n", "t.probes:1: Probe: missing probe name"},
		{"no probe string", "Probe TCP x\n", "t.probes:1: Probe: missing probe string q|...|"},
		{"unterminated probe string", "Probe TCP x q|abc\n", `t.probes:1: Probe: probe string not terminated by '|'`},
		{"bad escape", "Probe TCP x q|\\q|\n", `t.probes:1: Probe: probe string: unknown escape \q`},
		{"bad hex escape", "Probe TCP x q|\\xZZ|\n", `t.probes:1: Probe: probe string: bad \x escape at byte 0`},
		{"short hex escape", "Probe TCP x q|\\x4|\n", `t.probes:1: Probe: probe string: bad \x escape at byte 0`},
		{"trailing after probe", "Probe TCP x q|a| payload\n", `t.probes:1: Probe: unexpected "payload" after probe string`},
		{"duplicate probe", "Probe TCP x q|a|\nProbe TCP x q|b|\n", "t.probes:2: Probe: duplicate probe TCP x"},
		{"no service", "Probe TCP x q||\nmatch\n", "t.probes:2: match: missing service name"},
		{"no pattern", "Probe TCP x q||\nmatch ssh p/x/\n", "t.probes:2: match: missing pattern m/.../"},
		{"unterminated pattern", "Probe TCP x q||\nsoftmatch ssh m|abc\n", `t.probes:2: softmatch: pattern not terminated by '|'`},
		{"bad flag", "Probe TCP x q||\nmatch ssh m|a|x\n", `t.probes:2: match: unknown pattern flag 'x'`},
		{"unknown field", "Probe TCP x q||\nmatch ssh m|a| z/x/\n", `t.probes:2: match: unknown version field at "z/x/"`},
		{"unterminated field", "Probe TCP x q||\nmatch ssh m|a| p/x\n", `t.probes:2: match: version field p: not terminated by '/'`},
		{"field twice", "Probe TCP x q||\nmatch ssh m|a| p/x/ p/y/\n", "t.probes:2: match: version field p given twice"},
		{"garbage after field", "Probe TCP x q||\nmatch ssh m|a| p/x/y\n", `t.probes:2: match: version field p: unexpected 'y' after value`},
		{"bad template", "Probe TCP x q||\nmatch ssh m|a| v/$SUBST(1,\"a\")/\n", `t.probes:2: match: template "$SUBST(1,\"a\")": $SUBST takes 2 string arguments, got 1`},
		{"bad rarity", "Probe TCP x q||\nrarity 10\n", `t.probes:2: rarity: "10" is not a number from 1 to 9`},
		{"bad wait", "Probe TCP x q||\ntotalwaitms soon\n", `t.probes:2: totalwaitms: "soon" is not a number of milliseconds from 1 to 600000`},
		{"bad wrapped", "Probe TCP x q||\ntcpwrappedms 0\n", `t.probes:2: tcpwrappedms: "0" is not a number of milliseconds from 1 to 600000`},
		{"bad ports", "Probe TCP x q||\nports 80-70\n", `t.probes:2: ports: bad port range "80-70": end before start`},
		{"bad sslports", "Probe TCP x q||\nsslports 443,\n", `t.probes:2: sslports: empty port in "443,"`},
		{"empty fallback", "Probe TCP x q||\nfallback a,,b\n", `t.probes:2: fallback: empty probe name in "a,,b"`},
		{"unknown fallback", "Probe TCP x q||\nfallback Nope\n", `t.probes:1: probe x: fallback "Nope" names no probe`},
		{"line too long", "Probe TCP x q||\n# " + strings.Repeat("a", maxLineLen+1) + "\n", "t.probes:2: line longer than 1048576 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := NewDB().Add("t.probes", strings.NewReader(tt.file))
			require.Error(t, err)
			require.Equal(t, tt.want, err.Error())
		})
	}
}

func TestUnescape(t *testing.T) {
	tests := []struct{ in, want string }{
		{`plain`, "plain"},
		{`\0\a\b\f\n\r\t\v`, "\x00\a\b\f\n\r\t\v"},
		{`\\`, `\`},
		{`\x00\x7f\xFF\xab`, "\x00\x7f\xff\xab"},
		{`a\|b\"c\ d`, `a|b"c d`},
	}
	for _, tt := range tests {
		got, err := unescape(tt.in)
		require.NoError(t, err, tt.in)
		require.Equal(t, []byte(tt.want), got, tt.in)
	}
	for _, bad := range []string{`\`, `\z`, `\1`, `\x`, `\xg0`} {
		_, err := unescape(bad)
		require.Error(t, err, bad)
	}
}

func TestSubstitute(t *testing.T) {
	groups := [][]byte{[]byte("all"), []byte("9.2p1"), []byte("a\x01b\xffc"), []byte("7_0_15"), {0x01, 0x02}, nil}
	tests := []struct{ tmpl, want string }{
		{"no template", "no template"},
		{"$1", "9.2p1"},
		{"v$1 and $1", "v9.2p1 and 9.2p1"},
		{"[$5]", "[]"},
		{"[$9]", "[]"},
		{"$P(2)", "abc"},
		{`$SUBST(3,"_",".")`, "7.0.15"},
		{`$SUBST(3,"_","")`, "7015"},
		{`$I(4,">")`, "258"},
		{`$I(4,"<")`, "513"},
		{`x$I(5,">")y`, "x0y"},
		{"$$ and $x and $", "$$ and $x and $"},
	}
	for _, tt := range tests {
		got, err := substitute(tt.tmpl, groups)
		require.NoError(t, err, tt.tmpl)
		require.Equal(t, tt.want, got, tt.tmpl)
	}
	bad := []struct{ tmpl, want string }{
		{`$P(0)`, `template "$P(0)": $P: group number 1-9 expected`},
		{`$P(1`, `template "$P(1": $P: missing )`},
		{`$P(1,"a")`, `template "$P(1,\"a\")": $P takes 0 string arguments, got 1`},
		{`$SUBST(1,"a)`, `template "$SUBST(1,\"a)": $SUBST: unterminated string`},
		{`$SUBST(1,a,b)`, `template "$SUBST(1,a,b)": $SUBST: quoted argument expected`},
		{`$I(1,"=")`, `template "$I(1,\"=\")": $I: endianness must be ">" or "<", got "="`},
		{`$I(1,">")`, `template "$I(1,\">\")": $I of 9 bytes, at most 8`},
	}
	long := [][]byte{nil, []byte("123456789")}
	for _, tt := range bad {
		_, err := substitute(tt.tmpl, long)
		require.EqualError(t, err, tt.want)
	}
}

// nmapProbes is where Debian's nmap package installs its probe file.
const nmapProbes = "/usr/share/nmap/nmap-service-probes"

// TestParseNmapFile parses the operator-supplied nmap file when nmap is
// installed; it is read from the system, never shipped.
func TestParseNmapFile(t *testing.T) {
	path := nmapProbes
	if _, err := os.Stat(path); err != nil {
		t.Skipf("nmap's probe file is not installed: %v", err)
	}
	d, err := New(Options{Intensity: DefaultIntensity, ProbeFiles: []string{path}})
	require.NoError(t, err)
	probes, matches, soft := d.DB().Counts()
	bad := d.CompileAll()
	t.Logf("embedded + %s: %d probes, %d matches, %d softmatches, %d patterns do not compile with regexp2", path, probes, matches, soft, bad)
	require.Greater(t, probes, 100)
	require.Greater(t, matches, 10000)
	require.Less(t, bad, int64(matches/20), "at most 5%% of nmap's patterns may be beyond regexp2")
	require.NotNil(t, d.DB().Probe("TCP", "GetRequest"))
	require.NotNil(t, d.DB().Probe("UDP", "DNSStatusRequest"))
}
