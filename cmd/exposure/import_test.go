package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
)

// nmapDoc is nmap XML as nmap 7.93 writes it, with ports open as given.
func nmapDoc(start string, open ...string) string {
	var ports strings.Builder
	for _, p := range open {
		ports.WriteString(`<port protocol="tcp" portid="` + p + `"><state state="open" reason="syn-ack" reason_ttl="64"/><service name="http" product="nginx" version="1.22.1" method="probed" conf="10"><cpe>cpe:/a:igor_sysoev:nginx:1.22.1</cpe></service></port>` + "\n")
	}
	return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE nmaprun>
<nmaprun scanner="nmap" args="nmap -sV 198.18.0.2" start="` + start + `" version="7.93" xmloutputversion="1.05">
<scaninfo type="syn" protocol="tcp" numservices="1000" services="1-1000"/>
<verbose level="0"/><debugging level="0"/>
<host starttime="` + start + `" endtime="` + start + `"><status state="up" reason="user-set" reason_ttl="0"/>
<address addr="198.18.0.2" addrtype="ipv4"/>
<hostnames><hostname name="web.lab.test" type="PTR"/></hostnames>
<ports><extraports state="closed" count="998"><extrareasons reason="reset" count="998" proto="tcp" ports="1-79"/></extraports>
` + ports.String() + `</ports></host>
<runstats><finished time="` + start + `" elapsed="1.00" exit="success"/><hosts up="1" down="0" total="1"/></runstats>
</nmaprun>
`
}

func TestImportShowDiffXML(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "x.db")
	files := map[string]string{
		"b.xml": nmapDoc("1764054000", "80", "8080"),
		"a.xml": nmapDoc("1764050400", "80"),
		// nmap killed mid-scan: no runstats.
		"c.xml": strings.Split(nmapDoc("1764057600", "80"), "<runstats>")[0],
	}
	for name, doc := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o600))
	}
	code, out, errs := runCLI(t, "import", "--storage.path", db, "--target", "web",
		filepath.Join(dir, "c.xml"), filepath.Join(dir, "b.xml"), filepath.Join(dir, "a.xml"))
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "a.xml: web/1764050400000000000, complete, 1 host up, 1 open port, 0 changes")
	require.Contains(t, out, "b.xml: web/1764054000000000000, complete, 1 host up, 2 open ports, 1 change")
	require.Contains(t, out, "c.xml: web/1764057600000000000, incomplete")
	require.Contains(t, out, "imported 3 scans into target web")

	code, out, errs = runCLI(t, "history", "--storage.path", db, "--target", "web", "--format", "json")
	require.Equal(t, 0, code, errs)
	require.Equal(t, 1, strings.Count(out, "\n"), out)
	require.Contains(t, out, `"kind":"port_opened"`)
	require.Contains(t, out, `"port":8080`)

	// show: the latest complete is b.
	code, out, errs = runCLI(t, "show", "--storage.path", db, "--target", "web", "--format", "json")
	require.Equal(t, 0, code, errs)
	var sn snapshot.Snapshot
	require.NoError(t, json.Unmarshal([]byte(out), &sn))
	require.Equal(t, "web/1764054000000000000", sn.ID)
	require.Len(t, sn.Hosts, 1)
	require.Equal(t, "web.lab.test", sn.Hosts[0].Hostname)
	require.Equal(t, []string{"cpe:/a:igor_sysoev:nginx:1.22.1"}, sn.Hosts[0].Ports[1].Service.CPE)

	code, out, errs = runCLI(t, "show", "--storage.path", db, "--target", "web", "--format", "xml")
	require.Equal(t, 0, code, errs)
	validateXML(t, []byte(out))

	from, to := filepath.Join(dir, "from.xml"), filepath.Join(dir, "to.xml")
	code, out, errs = runCLI(t, "diff", "--storage.path", db, "--target", "web", "--format", "xml", "--output.from", from, "--output.to", to)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "ndiff "+from+" "+to)
	for _, f := range []string{from, to} {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		validateXML(t, b)
	}
	if nd, err := exec.LookPath("ndiff"); err == nil {
		o, _ := exec.Command(nd, from, to).CombinedOutput() // exit 1: differences
		require.Contains(t, string(o), "+8080/tcp open  http    nginx 1.22.1", string(o))
		require.NotContains(t, string(o), "80/tcp open  http    nginx 1.22.1\n-", string(o))
	}

	// Importing the same files again changes nothing; an older one is refused.
	code, out, errs = runCLI(t, "import", "--storage.path", db, "--target", "web", filepath.Join(dir, "c.xml"))
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "imported 0 scans")
	code, _, errs = runCLI(t, "import", "--storage.path", db, "--target", "web", filepath.Join(dir, "a.xml"))
	require.Equal(t, 2, code)
	require.Contains(t, errs, "not after the target's latest stored scan")
}

func TestImportBadFiles(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ doc, want string }{
		"foreign.xml": {"<?xml version=\"1.0\"?>\n<html/>", "foreign.xml:2: not nmap XML: root element <html>"},
		"port.xml":    {strings.Replace(nmapDoc("1764050400", "80"), `portid="80"`, `portid="http"`, 1), `port.xml:10: port/portid: "http": want a port number 1-65535`},
		"bomb.xml":    {"<?xml version=\"1.0\"?>\n<!DOCTYPE nmaprun [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>\n<nmaprun start=\"1\" comment=\"&b;\"/>", "bomb.xml:3: invalid character entity &b;"},
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(dir, name)
			require.NoError(t, os.WriteFile(f, []byte(tc.doc), 0o600))
			code, _, errs := runCLI(t, "import", "--storage.path", filepath.Join(dir, "x.db"), "--target", "web", f)
			require.Equal(t, 2, code)
			require.Contains(t, errs, tc.want)
		})
	}
}

func validateXML(t *testing.T, doc []byte) {
	t.Helper()
	const dtd = "/usr/share/nmap/nmap.dtd"
	xl, err := exec.LookPath("xmllint")
	if _, serr := os.Stat(dtd); err != nil || serr != nil {
		t.Log("xmllint or nmap.dtd missing: not validated")
		return
	}
	f := filepath.Join(t.TempDir(), "v.xml")
	require.NoError(t, os.WriteFile(f, doc, 0o600))
	out, err := exec.Command(xl, "--noout", "--dtdvalid", dtd, f).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// TestImportClearsDaemonState: the daemon's reported view predates the
// imported scans, so the import clears it and the daemon's next scan diffs
// against the newest imported one.
func TestImportClearsDaemonState(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "x.db")
	st, err := store.Open(db, store.Options{Timeout: time.Second})
	require.NoError(t, err)
	require.NoError(t, st.Commit(context.Background(), store.Commit{Target: "web", DiffState: []byte(`{"diff":{"v":2,"b":true}}`)}))
	require.NoError(t, st.Close())
	f := filepath.Join(dir, "a.xml")
	require.NoError(t, os.WriteFile(f, []byte(nmapDoc("1764050400", "80")), 0o600))
	code, _, errs := runCLI(t, "import", "--storage.path", db, "--target", "web", f)
	require.Equal(t, 0, code, errs)
	st, err = store.Open(db, store.Options{Timeout: time.Second})
	require.NoError(t, err)
	defer st.Close()
	raw, err := st.DiffState("web")
	require.NoError(t, err)
	require.Empty(t, raw)
	sn, err := st.LatestComplete("web")
	require.NoError(t, err)
	require.Equal(t, "web/1764050400000000000", sn.ID)
}
