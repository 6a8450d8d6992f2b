package monitor_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/exposure-monitor/exposure/internal/lab"
)

// chromiumFlags keep headless Chromium on this machine: no background
// requests, and a proxy on a closed loopback port for anything that is not
// loopback, so the browser sends no packet beyond 127.0.0.0/8.
var chromiumFlags = []string{
	"--headless=new", "--no-sandbox", "--disable-gpu",
	"--no-first-run", "--disable-background-networking", "--disable-component-update",
	"--disable-sync", "--disable-default-apps", "--disable-extensions", "--disable-breakpad",
	"--disable-domain-reliability", "--disable-client-side-phishing-detection",
	"--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1",
}

// chromium runs headless Chromium with a throw-away profile and returns
// what it printed on stdout.
func chromium(t *testing.T, args ...string) []byte {
	t.Helper()
	profile, err := os.MkdirTemp("", "exposure-chromium-")
	require.NoError(t, err)
	// Best effort: Chromium's helpers may still be writing the profile.
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append(append([]string{"--user-data-dir=" + profile}, chromiumFlags...), args...)
	cmd := exec.CommandContext(ctx, "chromium", argv...)
	cmd.Env = append(os.Environ(), "HOME="+profile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	require.NoError(t, err, "chromium %s: %s", strings.Join(args, " "), stderr.String())
	return stdout.Bytes()
}

// domRow is one body row of a table as the browser laid it out.
type domRow struct {
	attrs map[string]string
	cells map[string]string     // column header -> cell text
	nodes map[string]*html.Node // column header -> td
}

func (r domRow) String() string { return fmt.Sprint(r.attrs, r.cells) }

// loadDOM loads url in headless Chromium and parses the DOM it serialized.
func loadDOM(t *testing.T, url string) *html.Node {
	t.Helper()
	out := chromium(t, "--dump-dom", url)
	doc, err := html.Parse(bytes.NewReader(out))
	require.NoError(t, err)
	return doc
}

func findNode(n *html.Node, match func(*html.Node) bool) *html.Node {
	if match(n) {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := findNode(c, match); f != nil {
			return f
		}
	}
	return nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func children(n *html.Node, a atom.Atom) []*html.Node {
	var out []*html.Node
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode && c.DataAtom == a {
			out = append(out, c)
		}
	}
	return out
}

// text is the text content of n with runs of white space collapsed.
func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
			b.WriteByte(' ')
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.Join(strings.Fields(b.String()), " ")
}

// tableRows returns the body rows of the table in the section with the
// given id, each cell keyed by its column header.
func tableRows(t *testing.T, doc *html.Node, section string) []domRow {
	t.Helper()
	sec := findNode(doc, func(n *html.Node) bool { return n.Type == html.ElementNode && attr(n, "id") == section })
	require.NotNil(t, sec, "no element with id %q", section)
	table := findNode(sec, func(n *html.Node) bool { return n.Type == html.ElementNode && n.DataAtom == atom.Table })
	require.NotNil(t, table, "no table in #%s", section)
	thead := children(table, atom.Thead)
	tbody := children(table, atom.Tbody)
	require.Len(t, thead, 1, "#%s: thead", section)
	require.Len(t, tbody, 1, "#%s: tbody", section)
	headRows := children(thead[0], atom.Tr)
	require.Len(t, headRows, 1, "#%s: header rows", section)
	var header []string
	for _, th := range children(headRows[0], atom.Th) {
		header = append(header, text(th))
	}
	require.NotEmpty(t, header, "#%s: no column headers", section)
	var rows []domRow
	for _, tr := range children(tbody[0], atom.Tr) {
		r := domRow{attrs: map[string]string{}, cells: map[string]string{}, nodes: map[string]*html.Node{}}
		for _, a := range tr.Attr {
			r.attrs[a.Key] = a.Val
		}
		col := 0
		for _, td := range children(tr, atom.Td) {
			if attr(td, "colspan") != "" {
				col = len(header) // a placeholder row: no data columns
				continue
			}
			require.Less(t, col, len(header), "#%s: more cells than headers", section)
			r.cells[header[col]], r.nodes[header[col]] = text(td), td
			col++
		}
		rows = append(rows, r)
	}
	return rows
}

// rowsWhere returns the rows whose cells hold all of the given values.
func rowsWhere(rows []domRow, want map[string]string) []domRow {
	var out []domRow
next:
	for _, r := range rows {
		for k, v := range want {
			if r.cells[k] != v {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}

// TestLabStatusPageChromium runs the real daemon against a lab host and
// reads its status page the way an operator does, in headless Chromium: the
// target's row, then a port opened on the lab host after the baseline in
// the open-ports table (with the service -sV named) and as a port_opened
// change in the timeline. It also takes a screenshot and checks it is a
// real rendering.
func TestLabStatusPageChromium(t *testing.T) {
	t.Parallel()
	lab.RequireBinary(t, "chromium")
	h, addr, d := startLabHost(t, "web", "@every 2s")
	page := d.URL + "/"

	awaitScan(t, d)
	doc := loadDOM(t, page)
	targets := rowsWhere(tableRows(t, doc, "targets"), map[string]string{"Target": "lab"})
	require.Len(t, targets, 1, "the lab target's row")
	require.Equal(t, addr, targets[0].cells["Hosts"])
	require.Equal(t, "success", targets[0].cells["Result"])
	require.Equal(t, "target-lab", targets[0].attrs["id"])
	require.Empty(t, rowsWhere(tableRows(t, doc, "ports"), map[string]string{"Port": "8083/tcp"}), "8083 is not open yet")
	require.Empty(t, rowsWhere(tableRows(t, doc, "changes"), map[string]string{"Kind": "port_opened"}), "nothing opened yet")

	opened := time.Now()
	_, err := h.ListenAddr(netip.AddrPortFrom(netip.IPv6Unspecified(), 8083), "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
	require.NoError(t, err)
	lab.Eventually(t, 30*time.Second, "the port_opened change", func() bool {
		v, _ := d.Metric(t, `exposure_changes_total{kind="port_opened",target="lab"}`)
		return v == 1
	})

	doc = loadDOM(t, page)
	ports := tableRows(t, doc, "ports")
	row := rowsWhere(ports, map[string]string{"Target": "lab", "Address": addr, "Port": "8083/tcp"})
	require.Len(t, row, 1, "8083 in the open-ports table: %v", ports)
	require.Equal(t, map[string]string{"class": "port", "data-target": "lab", "data-address": addr, "data-port": "8083"}, row[0].attrs)
	require.Equal(t, "ssh", row[0].cells["Service"])
	require.Equal(t, "OpenSSH", row[0].cells["Product"])
	require.Len(t, ports, 1, "only 8083 is open: %v", ports)

	changes := tableRows(t, doc, "changes")
	ch := rowsWhere(changes, map[string]string{"Kind": "port_opened", "Target": "lab", "Address": addr, "Port": "8083/tcp"})
	require.Len(t, ch, 1, "the port_opened change in the timeline: %v", changes)
	require.Equal(t, "change kind-port_opened", ch[0].attrs["class"])
	require.Equal(t, "info", ch[0].cells["Severity"])
	require.Empty(t, ch[0].cells["Before"])
	require.True(t, strings.HasPrefix(ch[0].cells["After"], "open ssh OpenSSH"), "after: %q", ch[0].cells["After"])
	tm := findNode(ch[0].nodes["When"], func(n *html.Node) bool { return n.Type == html.ElementNode && n.DataAtom == atom.Time })
	require.NotNil(t, tm, "the change's time element")
	at, err := time.Parse(time.RFC3339, attr(tm, "datetime"))
	require.NoError(t, err)
	require.WithinRange(t, at, opened.Add(-time.Second), time.Now().Add(time.Second))

	targets = rowsWhere(tableRows(t, doc, "targets"), map[string]string{"Target": "lab"})
	require.Len(t, targets, 1)
	require.Equal(t, "1", targets[0].cells["Open ports"])

	metrics := findNode(doc, func(n *html.Node) bool {
		return n.Type == html.ElementNode && n.DataAtom == atom.A && attr(n, "href") == "/metrics"
	})
	require.NotNil(t, metrics, "a link to /metrics")
	require.Nil(t, findNode(doc, func(n *html.Node) bool { return n.Type == html.ElementNode && n.DataAtom == atom.Script }), "no JavaScript")

	shot := filepath.Join(t.TempDir(), "status.png")
	chromium(t, "--screenshot="+shot, "--window-size=1280,900", page)
	checkScreenshot(t, shot, 1280, 900)
}

// checkScreenshot checks that file is a PNG of the given size that shows a
// rendered page, not a blank or error screen: a blank page compresses to
// a few kilobytes of one colour.
func checkScreenshot(t *testing.T, file string, w, h int) {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Greater(t, len(b), 20<<10, "screenshot of %d bytes", len(b))
	img, err := png.Decode(bytes.NewReader(b))
	require.NoError(t, err)
	require.Equal(t, image.Rect(0, 0, w, h), img.Bounds())
	colours := map[color.RGBA]bool{}
	for y := 0; y < h; y += 3 {
		for x := 0; x < w; x += 3 {
			colours[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)] = true
		}
	}
	require.Greater(t, len(colours), 32, "distinct colours in the screenshot")
	t.Logf("screenshot: %d bytes, %d distinct colours sampled", len(b), len(colours))
}
