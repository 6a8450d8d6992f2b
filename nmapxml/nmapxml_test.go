package nmapxml

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/snapshot"
)

const dtd = "/usr/share/nmap/nmap.dtd"

func sample() *snapshot.Snapshot {
	t0 := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	return &snapshot.Snapshot{
		Target: "dmz", ID: snapshot.NewID("dmz", t0), StartedAt: t0, FinishedAt: t0.Add(3 * time.Second), Complete: true,
		Quality: snapshot.Quality{Closed: 1},
		Hosts: []snapshot.Host{
			{Address: "198.18.0.2", Hostname: "mail.example.test", State: "up", Ports: []snapshot.Port{
				{Port: 22, Protocol: "tcp", State: "open", Service: &snapshot.Service{Name: "ssh", Product: "OpenSSH",
					Version: "9.2p1 Debian 2+deb12u10", Info: "protocol 2.0", CPE: []string{"cpe:/a:openbsd:openssh:9.2p1"}}},
				{Port: 443, Protocol: "tcp", State: "open", Service: &snapshot.Service{Name: "http", Product: "nginx", Tunnel: "ssl",
					CPE: []string{}, Incomplete: true, Cert: &snapshot.Cert{Subject: "CN=mail", Issuer: "CN=ca", SANs: []string{"mail.example.test"},
						NotBefore: t0, NotAfter: t0.Add(time.Hour), Fingerprint: "ab12"}}},
				{Port: 8080, Protocol: "tcp", State: "filtered"},
			}, Unlisted: snapshot.Unlisted{TCPClosed: 2}},
			{Address: "2001:2::5", State: "up", Ports: []snapshot.Port{{Port: 80, Protocol: "tcp", State: "open"}},
				Unlisted: snapshot.Unlisted{TCPClosed: 4, UDPClosed: 3, UDPOpenFiltered: 2}},
		},
	}
}

func write(t *testing.T, s *snapshot.Snapshot, o WriteOptions) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, Write(&b, s, o))
	return b.Bytes()
}

// validate runs xmllint against the nmap.dtd the nmap package installs.
func validate(t *testing.T, doc []byte) {
	t.Helper()
	if _, err := os.Stat(dtd); err != nil {
		t.Skip("nmap's DTD is not installed: ", err)
	}
	xl, err := exec.LookPath("xmllint")
	if err != nil {
		t.Skip("xmllint not installed (libxml2-utils)")
	}
	f := filepath.Join(t.TempDir(), "out.xml")
	require.NoError(t, os.WriteFile(f, doc, 0o600))
	out, err := exec.Command(xl, "--noout", "--dtdvalid", dtd, f).CombinedOutput()
	require.NoError(t, err, "xmllint: %s\n%s", out, doc)
}

func TestWriteValidates(t *testing.T) {
	s := sample()
	for name, o := range map[string]WriteOptions{
		"scan":       {Scripts: true, Args: "exposure scan -p 22,80,443,8080,9 x", Version: "1.0", Ports: []uint16{9, 22, 80, 443, 8080}, PortName: func(p uint16) string { return "http" }},
		"stored":     {},
		"connect":    {ScanType: "connect"},
		"incomplete": {},
	} {
		t.Run(name, func(t *testing.T) {
			sn := s
			if name == "incomplete" {
				c := *s
				c.Complete = false
				sn = &c
			}
			validate(t, write(t, sn, o))
		})
	}
}

func TestWriteContent(t *testing.T) {
	doc := string(write(t, sample(), WriteOptions{Scripts: true, Ports: []uint16{9, 22, 80, 443, 8080}}))
	for _, want := range []string{
		`scanner="nmap"`, `profile_name="exposure"`, `services="9,22,80,443,8080"`,
		`<extraports state="closed" count="2">`, // 9 and 80 on the first host
		// TCP and UDP of the second, as nmap writes -sS -sU.
		`<extraports state="closed" count="7">`, `<extrareasons reason="reset" count="4" proto="tcp"></extrareasons>`,
		`<extrareasons reason="port-unreach" count="3" proto="udp"></extrareasons>`,
		`<extraports state="open|filtered" count="2">`, `<extrareasons reason="no-response" count="2" proto="udp"></extrareasons>`,
		`<service name="ssh" product="OpenSSH" version="9.2p1 Debian 2+deb12u10" extrainfo="protocol 2.0" method="probed" conf="10">`,
		`<cpe>cpe:/a:openbsd:openssh:9.2p1</cpe>`, `tunnel="ssl"`, `<script id="ssl-cert"`, `<elem key="sha256">ab12</elem>`,
		`<script id="exposure-detection"`, `addrtype="ipv6"`, `<hostname name="mail.example.test" type="PTR">`,
		`exit="success"`, `<hosts up="2" down="0" total="2">`,
	} {
		require.Contains(t, doc, want)
	}
}

// TestRoundTrip: what Write writes, Read reads back (certificates aside:
// nmap's consumers read them from the script, we keep only the service).
func TestRoundTrip(t *testing.T) {
	s := sample()
	got, err := Read(bytes.NewReader(write(t, s, WriteOptions{Scripts: true, Ports: []uint16{9, 22, 80, 443, 8080}})), ReadOptions{Target: "dmz"})
	require.NoError(t, err)
	want := sample()
	want.Hosts[0].Ports[1].Service.Cert = nil
	want.Quality = snapshot.Quality{Closed: 9, Filtered: 2} // the extraports
	want.Sort()
	require.Equal(t, want, got)

	inc := sample()
	inc.Complete = false
	got, err = Read(bytes.NewReader(write(t, inc, WriteOptions{})), ReadOptions{Target: "dmz"})
	require.NoError(t, err)
	require.False(t, got.Complete)
}

func TestReadTruncated(t *testing.T) {
	doc := write(t, sample(), WriteOptions{})
	i := bytes.Index(doc, []byte(`<host starttime`))
	j := bytes.LastIndex(doc, []byte(`<host starttime`))
	// Cut inside the second host: the first is kept, the snapshot is incomplete.
	got, err := Read(bytes.NewReader(doc[:j+40]), ReadOptions{Target: "dmz"})
	require.NoError(t, err)
	require.False(t, got.Complete)
	require.Len(t, got.Hosts, 1)
	require.Equal(t, "198.18.0.2", got.Hosts[0].Address)
	// Cut before any host: nothing is known, and still incomplete.
	got, err = Read(bytes.NewReader(doc[:i]), ReadOptions{Target: "dmz"})
	require.NoError(t, err)
	require.False(t, got.Complete)
	require.Empty(t, got.Hosts)
}

func TestReadBad(t *testing.T) {
	head := `<?xml version="1.0"?>` + "\n"
	run := `<nmaprun scanner="nmap" start="1764050400" version="7.93" xmloutputversion="1.05">` + "\n"
	for name, tc := range map[string]struct{ doc, want string }{
		"foreign":  {head + "<html><body/></html>", "line 2: not nmap XML: root element <html>"},
		"empty":    {"", "line 1: not nmap XML: no nmaprun element"},
		"garbage":  {head + run + "<host><status state=\"up\"/>\n<<<", "line 4: expected element name after <"},
		"address":  {head + run + `<host><status state="up"/><address addr="999.1.1.1"/></host></nmaprun>`, `line 3: address/addr: "999.1.1.1": not an IP address`},
		"portid":   {head + run + `<host><status state="up"/><address addr="198.18.0.1"/><ports><port protocol="tcp" portid="70000">`, `line 3: port/portid: "70000": want a port number 1-65535`},
		"state":    {head + run + `<host><status state="up"/><address addr="198.18.0.1"/><ports><port protocol="tcp" portid="22"><state state="ajar"/>`, `line 3: state/state: "ajar": not a port state`},
		"start":    {head + `<nmaprun start="yesterday">`, `line 2: nmaprun/start: "yesterday": not a time in seconds since 1970`},
		"nostart":  {head + `<nmaprun></nmaprun>`, "nmaprun/start: no start time"},
		"entities": {head + `<!DOCTYPE nmaprun [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>` + "\n" + run + `<host comment="&b;"></host></nmaprun>`, "invalid character entity &b;"},
		"bigattr":  {head + run + `<host comment="` + strings.Repeat("A", 10<<20) + `"></host></nmaprun>`, "line 3: host/comment: \"AAAA"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Read(strings.NewReader(tc.doc), ReadOptions{Target: "x"})
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			var e *Error
			require.True(t, errors.As(err, &e))
		})
	}
}

// TestReadHuge: a file past the bound fails after reading the bound, not
// the file.
func TestReadHuge(t *testing.T) {
	doc := write(t, sample(), WriteOptions{})
	src := io.MultiReader(bytes.NewReader(doc[:bytes.Index(doc, []byte("<runstats>"))]),
		&endless{b: []byte("<!-- padding -->\n")})
	_, err := Read(src, ReadOptions{Target: "x", MaxBytes: 1 << 20})
	require.ErrorContains(t, err, "file larger than 1048576 bytes")
}

// endless repeats b for ever.
type endless struct{ b []byte }

func (e *endless) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], e.b)
	}
	return n, nil
}

func TestReadCleansText(t *testing.T) {
	doc := `<nmaprun start="1764050400"><host><status state="up"/><address addr="198.18.0.1"/><ports><port protocol="tcp" portid="22"><state state="open"/>` +
		`<service name="ssh" product="Open&#x202e;SSH&#10;&#9;x" method="probed" conf="10"/></port></ports></host><runstats><finished time="1764050401" exit="success"/></runstats></nmaprun>`
	got, err := Read(strings.NewReader(doc), ReadOptions{Target: "x"})
	require.NoError(t, err)
	require.True(t, got.Complete)
	require.Equal(t, "Open SSH x", got.Hosts[0].Ports[0].Service.Product)
}

func FuzzRead(f *testing.F) {
	var b bytes.Buffer
	_ = Write(&b, sample(), WriteOptions{Scripts: true})
	f.Add(b.Bytes())
	f.Add([]byte(`<nmaprun start="1"><host><address addr="::1"/><ports><port protocol="tcp" portid="1"><state state="open"/></port></ports></host></nmaprun>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Read(bytes.NewReader(data), ReadOptions{Target: "f"})
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			return
		}
		// Whatever reads must write valid XML that reads the same.
		var out bytes.Buffer
		if err := Write(&out, s, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(&out, ReadOptions{Target: "f"}); err != nil {
			t.Fatalf("re-read: %v\n%s", err, out.Bytes())
		}
	})
}

// TestWriteUDPScanInfo: a scan of TCP and UDP ports has nmap's scaninfo
// per protocol, a UDP-only one has no TCP scaninfo, UDP ports keep their
// protocol and open|filtered state, and both documents validate.
func TestWriteUDPScanInfo(t *testing.T) {
	s := sample()
	s.Hosts[0].Ports = append(s.Hosts[0].Ports,
		snapshot.Port{Port: 53, Protocol: "udp", State: "open", Service: &snapshot.Service{Name: "domain", Product: "ISC BIND", CPE: []string{}}},
		snapshot.Port{Port: 69, Protocol: "udp", State: "open|filtered"})
	both := write(t, s, WriteOptions{Ports: []uint16{22, 443, 8080, 80}, UDPPorts: []uint16{161, 53, 69}})
	validate(t, both)
	doc := string(both)
	require.Contains(t, doc, `<scaninfo type="syn" protocol="tcp" numservices="4" services="22,80,443,8080">`)
	require.Contains(t, doc, `<scaninfo type="udp" protocol="udp" numservices="3" services="53,69,161">`)
	require.Contains(t, doc, "<port protocol=\"udp\" portid=\"53\">\n    <state state=\"open\" reason=\"udp-response\"")
	require.Contains(t, doc, "<port protocol=\"udp\" portid=\"69\">\n    <state state=\"open|filtered\" reason=\"no-response\"")

	u := sample()
	u.Hosts = []snapshot.Host{{Address: "198.18.0.2", State: "up", Ports: []snapshot.Port{{Port: 53, Protocol: "udp", State: "open"}}}}
	only := write(t, u, WriteOptions{Ports: []uint16{}, UDPPorts: []uint16{53}})
	validate(t, only)
	require.NotContains(t, string(only), `protocol="tcp"`)
	require.Contains(t, string(only), `<scaninfo type="udp" protocol="udp" numservices="1" services="53">`)
	// A stored snapshot (no port lists) takes them from the ports shown.
	stored := string(write(t, s, WriteOptions{}))
	require.Contains(t, stored, `<scaninfo type="udp" protocol="udp" numservices="2" services="53,69">`)
}

// TestReadExtraPorts: nmap's extraports count per host and protocol, from
// extrareasons' proto, TCP without one (nmap before 7.90), and listed
// closed ports count as unlisted.
func TestReadExtraPorts(t *testing.T) {
	doc := `<?xml version="1.0"?><nmaprun scanner="nmap" start="1795586400">
<host><status state="up"/><address addr="198.18.0.9" addrtype="ipv4"/><ports>
<extraports state="closed" count="30"><extrareasons reason="port-unreach" count="28" proto="udp" ports="1-28"/><extrareasons reason="reset" count="2" proto="tcp"/></extraports>
<extraports state="filtered" count="5"></extraports>
<port protocol="udp" portid="53"><state state="closed" reason="port-unreach"/></port>
<port protocol="udp" portid="161"><state state="open|filtered" reason="no-response"/></port>
</ports></host><runstats><finished time="1795586401" exit="success"/></runstats></nmaprun>`
	got, err := Read(strings.NewReader(doc), ReadOptions{Target: "x"})
	require.NoError(t, err)
	require.Len(t, got.Hosts, 1)
	require.Equal(t, snapshot.Unlisted{UDPClosed: 29, TCPClosed: 2, TCPFiltered: 5}, got.Hosts[0].Unlisted)

	bad := strings.Replace(doc, `count="2" proto="tcp"`, `count="3" proto="tcp"`, 1)
	_, err = Read(strings.NewReader(bad), ReadOptions{Target: "x"})
	require.ErrorContains(t, err, "extrareasons/count")
}
