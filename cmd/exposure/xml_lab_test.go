package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/snapshot"
)

// ndiffPort is a port line of ndiff's text output: sign, port, state.
var ndiffPort = regexp.MustCompile(`^([-+ ])(\d+/tcp)\s+(\S+)\s*(.*)$`)

// TestLabNmapXML scans one lab host running real daemons with nmap -sV and
// with exposure scan --sV -oX, and checks our XML against nmap's tools:
// xmllint against nmap.dtd, ndiff (no host, port or state difference;
// service lines only where the two detections differ, logged), nmap.xsl
// (every open port in the HTML), and nmap's own XML imported equals what
// exposure found (ports and states).
func TestLabNmapXML(t *testing.T) {
	lab.RequireBinary(t, "nmap", "ndiff", "xmllint", "xsltproc")
	l := lab.New(t)
	h := l.AddHost("xml")
	lab.Start(t, h, "sshd", "nginx", "redis", "proftpd")
	dir := t.TempDir()
	addr := h.Addr().String()
	const ports = "1-1024,6379"
	nmapXML, ourXML := filepath.Join(dir, "nmap.xml"), filepath.Join(dir, "exposure.xml")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nmap", "-n", "-Pn", "-sS", "-sV", "-e", l.Interface(), "-p", ports, "-oX", nmapXML, addr).CombinedOutput()
	require.NoError(t, err, "nmap: %s", out)
	code, text, errs := runCLI(t, "scan", "-n", "-e", l.Interface(), "--sV", "-p", ports, "-oX", ourXML, addr)
	require.Equal(t, 0, code, errs)
	t.Logf("exposure:\n%s", text)

	doc, err := os.ReadFile(ourXML)
	require.NoError(t, err)
	validateXML(t, doc)

	// ndiff exits 1 when the scans differ; the port lines must not.
	nd, _ := exec.Command("ndiff", nmapXML, ourXML).CombinedOutput()
	t.Logf("ndiff nmap.xml exposure.xml:\n%s", nd)
	require.NotContains(t, string(nd), "Traceback", "ndiff failed")
	minus, plus := map[string]string{}, map[string]string{}
	for _, line := range strings.Split(string(nd), "\n") {
		m := ndiffPort.FindStringSubmatch(line)
		switch {
		case m != nil && m[1] == "-":
			minus[m[2]] = m[3]
		case m != nil && m[1] == "+":
			plus[m[2]] = m[3]
		case strings.HasPrefix(line, "-Not shown") || strings.HasPrefix(line, "+Not shown"):
			t.Errorf("ndiff: closed ports differ: %s", line)
		case strings.HasPrefix(line, "-Host is") || strings.HasPrefix(line, "+Host is"):
			t.Errorf("ndiff: host state differs: %s", line)
		}
	}
	for port, st := range minus {
		require.Contains(t, plus, port, "ndiff: %s only in nmap's scan", port)
		require.Equal(t, st, plus[port], "ndiff: state of %s", port)
		t.Logf("service detections differ on %s", port)
	}
	for port := range plus {
		require.Contains(t, minus, port, "ndiff: %s only in exposure's scan", port)
	}

	// nmap.xsl renders it, listing every open port.
	html, err := exec.Command("xsltproc", "/usr/share/nmap/nmap.xsl", ourXML).Output()
	require.NoError(t, err)
	var ours snapshot.Snapshot
	code, js, errs := runCLI(t, "scan", "-n", "-e", l.Interface(), "--sV", "-p", ports, "--format", "json", addr)
	require.Equal(t, 0, code, errs)
	require.NoError(t, json.Unmarshal([]byte(js), &ours))
	require.NotEmpty(t, ours.Hosts)
	for _, p := range ours.Hosts[0].Ports {
		require.Contains(t, string(html), `<td>`+itoa(p.Port)+`</td>`, "port %d missing from the HTML", p.Port)
	}

	// EXPOSURE_XML_KEEP=DIR keeps the files, for the README's example.
	if keep := os.Getenv("EXPOSURE_XML_KEEP"); keep != "" {
		require.NoError(t, os.WriteFile(filepath.Join(keep, "exposure.html"), html, 0o644))
		for _, f := range []string{nmapXML, ourXML} {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(keep, filepath.Base(f)), b, 0o644))
		}
		require.NoError(t, os.WriteFile(filepath.Join(keep, "ndiff.txt"), nd, 0o644))
	}

	// nmap's XML imported reads as what exposure finds.
	db := filepath.Join(dir, "x.db")
	code, _, errs = runCLI(t, "import", "--storage.path", db, "--target", "lab", nmapXML)
	require.Equal(t, 0, code, errs)
	code, js, errs = runCLI(t, "show", "--storage.path", db, "--target", "lab", "--format", "json")
	require.Equal(t, 0, code, errs)
	var imported snapshot.Snapshot
	require.NoError(t, json.Unmarshal([]byte(js), &imported))
	require.True(t, imported.Complete)
	require.Equal(t, portStates(&ours), portStates(&imported))
	// Services where nmap had them equal exposure's -sV.
	want := services(&ours)
	for k, v := range services(&imported) {
		require.Equal(t, v, want[k], "service on %s: nmap's, then ours", k)
	}
	// nmap's extraports are the host's unlisted ports, and the stored
	// snapshot writes them back: ndiff sees no "Not shown" line differ.
	require.Len(t, imported.Hosts, 1)
	require.Equal(t, ours.Hosts[0].Unlisted, imported.Hosts[0].Unlisted, "unlisted ports: ours, then nmap's")
	code, shown, errs := runCLI(t, "show", "--storage.path", db, "--target", "lab", "--format", "xml")
	require.Equal(t, 0, code, errs)
	validateXML(t, []byte(shown))
	shownXML := filepath.Join(dir, "shown.xml")
	require.NoError(t, os.WriteFile(shownXML, []byte(shown), 0o600))
	nd, _ = exec.Command("ndiff", nmapXML, shownXML).CombinedOutput()
	for _, line := range strings.Split(string(nd), "\n") {
		if strings.HasPrefix(line, "-Not shown") || strings.HasPrefix(line, "+Not shown") {
			t.Errorf("ndiff nmap.xml shown.xml: closed ports differ: %s", line)
		}
	}
}

// services is name, product and version per address:port.
func services(s *snapshot.Snapshot) map[string]string {
	m := map[string]string{}
	for _, h := range s.Hosts {
		for _, p := range h.Ports {
			if p.Service != nil {
				m[h.Address+":"+itoa(p.Port)] = p.Service.FullName() + " | " + p.Service.Product + " | " + p.Service.Version
			}
		}
	}
	return m
}

func portStates(s *snapshot.Snapshot) map[string]string {
	m := map[string]string{}
	for _, h := range s.Hosts {
		for _, p := range h.Ports {
			m[h.Address+":"+itoa(p.Port)] = p.State
		}
	}
	return m
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }
