package spec

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// expand lists the ports of p by brute force over Contains, the reference the fast paths are
// checked against.
func expand(p Ports) []uint16 {
	var out []uint16
	for port := 1; port <= 65535; port++ {
		if p.Contains(uint16(port)) {
			out = append(out, uint16(port))
		}
	}
	return out
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		spec   string
		len    int
		string string
		has    []uint16
		hasNot []uint16
	}{
		{spec: "22,80,443", len: 3, string: "22,80,443", has: []uint16{22, 80, 443}, hasNot: []uint16{1, 21, 23, 444, 65535}},
		{spec: "1-1024", len: 1024, string: "1-1024", has: []uint16{1, 512, 1024}, hasNot: []uint16{1025}},
		{spec: "-", len: 65535, string: "1-65535", has: []uint16{1, 65535}},
		{spec: "1-65535", len: 65535, string: "1-65535"},
		{spec: "-1024", len: 1024, string: "1-1024"},
		{spec: "60000-", len: 5536, string: "60000-65535"},
		{spec: "80", len: 1, string: "80"},
		{spec: "443,80,22", len: 3, string: "22,80,443"},
		{spec: " 22 , 80 ,443 ", len: 3, string: "22,80,443"},
		{spec: "80,80,80", len: 1, string: "80"},
		{spec: "1-10,5-20,21", len: 21, string: "1-21"},
		{spec: "1-10,11-20", len: 20, string: "1-20"},
		{spec: "1-10,12-20", len: 19, string: "1-10,12-20"},
		{spec: "65535,65534", len: 2, string: "65534-65535"},
		{spec: "0080", len: 1, string: "80"},
		{spec: "top:1", len: 1, string: "80"},
		{spec: "top:10", len: 10, string: "21-23,25,80,110,139,443,445,3389"},
		{spec: "top:1000", len: 1000, has: []uint16{22, 80, 443, 3389, 8080}, hasNot: []uint16{2, 65535}},
		{spec: "top: 5", len: 5, string: "21-23,80,443"},
		{spec: "TOP:5", len: 5, string: "21-23,80,443"},
		{spec: "top:100,8080-8090", len: 109, has: []uint16{8083, 8090, 22}, hasNot: []uint16{8091}},
		{spec: "top:1000,-", len: 65535, string: "1-65535"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			p, err := ParsePorts(tt.spec)
			require.NoError(t, err)
			require.Equal(t, tt.len, p.Len())
			if tt.string != "" {
				require.Equal(t, tt.string, p.String())
			}
			for _, port := range tt.has {
				require.True(t, p.Contains(port), "port %d", port)
			}
			for _, port := range tt.hasNot {
				require.False(t, p.Contains(port), "port %d", port)
			}
			all := expand(p)
			require.Len(t, all, p.Len())
			for i, port := range all {
				require.Equal(t, port, p.At(i))
			}
			q, err := ParsePorts(p.String())
			require.NoError(t, err)
			require.True(t, p.Equal(q))
		})
	}
}

func TestParsePortsTopOverlap(t *testing.T) {
	// top:100 contains 8080, 8081, 8088 and 8089 from 8080-8090; the rest is new.
	p, err := ParsePorts("top:100,8080-8090")
	require.NoError(t, err)
	inTop := 0
	for _, port := range TopPorts(100) {
		if port >= 8080 && port <= 8090 {
			inTop++
		}
	}
	require.Equal(t, 100+11-inTop, p.Len())
}

func TestParsePortsErrors(t *testing.T) {
	tests := []struct {
		spec, value, reason string
	}{
		{"", "", "empty port spec"},
		{"   ", "   ", "empty port spec"},
		{"80-70", "80-70", "range end before start"},
		{"22,80-70", "80-70", "range end before start"},
		{"70000", "70000", "port out of range 1-65535"},
		{"1-70000", "1-70000", "port out of range 1-65535"},
		{"99999999999999999999", "99999999999999999999", "port out of range 1-65535"},
		{"0", "0", "port out of range 1-65535"},
		{"0-10", "0-10", "port out of range 1-65535"},
		{"http", "http", "not a port number"},
		{"22,ssh", "ssh", "not a port number"},
		{"-5-10", "-5-10", "not a port number"},
		{"+80", "+80", "not a port number"},
		{"1--2", "1--2", "not a port number"},
		{"80 81", "80 81", "not a port number"},
		{"22,,80", "22,,80", "empty list element"},
		{"22,", "22,", "empty list element"},
		{"top:0", "top:0", "top:N needs N in 1-1000"},
		{"top:1001", "top:1001", "top:N needs N in 1-1000"},
		{"top:", "top:", "top:N needs N in 1-1000"},
		{"top:x", "top:x", "top:N needs N in 1-1000"},
		{"top:+5", "top:+5", "top:N needs N in 1-1000"},
		{"top:-5", "top:-5", "top:N needs N in 1-1000"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			_, err := ParsePorts(tt.spec)
			var e *Error
			require.True(t, errors.As(err, &e), "error %v", err)
			require.Equal(t, &Error{Value: tt.value, Reason: tt.reason}, e)
			require.Equal(t, strconv.Quote(tt.value)+": "+tt.reason, err.Error())
		})
	}
}

func TestPortsZeroValue(t *testing.T) {
	var p Ports
	require.Equal(t, 0, p.Len())
	require.False(t, p.Contains(80))
	require.Equal(t, "", p.String())
	require.Panics(t, func() { p.At(0) })
	require.True(t, p.Equal(PortsOf()))
}

func TestPortsOfAndAll(t *testing.T) {
	p := PortsOf(443, 22, 0, 22, 23)
	require.Equal(t, "22-23,443", p.String())
	require.Equal(t, 2, p.Ranges())
	require.Equal(t, 65535, AllPorts().Len())
	require.Panics(t, func() { p.At(3) })
	require.Panics(t, func() { p.At(-1) })
}

func TestPortsMemoryIndependentOfCount(t *testing.T) {
	all, err := ParsePorts("-")
	require.NoError(t, err)
	require.Equal(t, 1, all.Ranges())
	few, err := ParsePorts("1-10,20-30,40-65535")
	require.NoError(t, err)
	require.Equal(t, 3, few.Ranges())
}

func TestTopPorts(t *testing.T) {
	top := TopPorts(1000)
	require.Len(t, top, 1000)
	require.Equal(t, []uint16{80, 23, 443, 21, 22, 25, 3389, 110, 445, 139}, top[:10])
	seen := map[uint16]bool{}
	for _, p := range top {
		require.NotZero(t, p)
		require.False(t, seen[p], "duplicate %d", p)
		seen[p] = true
	}
	require.Len(t, TopPorts(5000), 1000)
	require.Empty(t, TopPorts(0))
	require.Empty(t, TopPorts(-1))
	// Callers get a copy.
	a := TopPorts(3)
	a[0] = 1
	require.Equal(t, uint16(80), TopPorts(1)[0])
}

// TestLabTopPortsMatchNmap compares TopPorts(n) with the ports nmap itself picks for --top-ports n,
// read from the scaninfo element of a connect scan of 127.0.0.1 (loopback only). It needs nmap but
// not root; with EXPOSURE_LAB=required a missing nmap is a failure.
func TestLabTopPortsMatchNmap(t *testing.T) {
	if testing.Short() {
		t.Skip("lab test: needs nmap and scans 127.0.0.1; skipped in -short mode")
	}
	nmap, err := exec.LookPath("nmap")
	if err != nil {
		if os.Getenv("EXPOSURE_LAB") == "required" {
			t.Fatalf("nmap not found and EXPOSURE_LAB=required: %v", err)
		}
		t.Skipf("nmap not in PATH: %v", err)
	}
	for _, n := range []int{10, 100, 1000} {
		out, err := exec.CommandContext(t.Context(), nmap, "-oX", "-", "-sT", "-Pn", "-n",
			"--top-ports", strconv.Itoa(n), "127.0.0.1").Output()
		require.NoError(t, err)
		services := scaninfoServices(t, string(out))
		want, err := ParsePorts(services)
		require.NoError(t, err)
		got := PortsOf(TopPorts(n)...)
		require.Equal(t, want.String(), got.String(), "top %d", n)
	}
}

func scaninfoServices(t *testing.T, xml string) string {
	t.Helper()
	const key = ` services="`
	start := strings.Index(xml, key)
	require.GreaterOrEqual(t, start, 0, "no scaninfo in nmap output")
	rest := xml[start+len(key):]
	end := strings.Index(rest, `"`)
	require.Greater(t, end, 0)
	return rest[:end]
}
