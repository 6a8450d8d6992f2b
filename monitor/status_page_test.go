package monitor

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/snapshot"
)

// TestPortsPage pages the open ports of two targets' snapshots and checks
// that the pages, in order, are exactly the whole list, with its total,
// and that a target filter pages that target's ports alone.
func TestPortsPage(t *testing.T) {
	c := newPortCollector(1000)
	var want []string
	for _, name := range []string{"b", "a"} {
		s := &snapshot.Snapshot{Target: name, Complete: true}
		for h := range 7 {
			host := snapshot.Host{Address: fmt.Sprintf("198.18.0.%d", h+1), State: snapshot.HostUp}
			for p := range h % 4 { // hosts with 0..3 open ports, and a closed one
				host.Ports = append(host.Ports, snapshot.Port{Port: uint16(22 + p), Protocol: "tcp", State: snapshot.StateOpen})
			}
			host.Ports = append(host.Ports, snapshot.Port{Port: 9, Protocol: "tcp", State: snapshot.StateFiltered})
			s.Hosts = append(s.Hosts, host)
		}
		c.set(s)
	}
	for _, name := range []string{"a", "b"} {
		for h := range 7 {
			for p := range h % 4 {
				want = append(want, fmt.Sprintf("%s %s %d", name, fmt.Sprintf("198.18.0.%d", h+1), 22+p))
			}
		}
	}
	key := func(ps []statusPort) []string {
		var out []string
		for _, p := range ps {
			out = append(out, fmt.Sprintf("%s %s %d", p.Target, p.Address, p.Port))
		}
		return out
	}
	for _, limit := range []int{1, 2, 3, 5, 100} {
		var got []string
		for off := 0; off < len(want)+limit; off += limit {
			page, total := c.portsPage("", off, limit)
			require.Equal(t, len(want), total)
			require.LessOrEqual(t, len(page), limit)
			got = append(got, key(page)...)
		}
		require.Equal(t, want, got, "limit %d", limit)
	}
	page, total := c.portsPage("b", 2, 3)
	require.Equal(t, len(want)/2, total)
	require.Equal(t, want[len(want)/2+2:len(want)/2+5], key(page))
	page, total = c.portsPage("nope", 0, 3)
	require.Zero(t, total)
	require.Empty(t, page)
}

// TestStatusPagePages renders the status page of a daemon with three
// open ports a page of one, and follows its next links to the end.
func TestStatusPagePages(t *testing.T) {
	td := startTestDaemon(t, testConfig)
	td.net.set("alpha", 22, 23, 80)
	td.d.runTarget(context.Background(), "alpha")
	waitFor(t, "a successful scan", func() bool { return scans(td.reg, "alpha", resultSuccess) >= 1 })

	portRow := regexp.MustCompile(`data-port="(\d+)"`)
	next := regexp.MustCompile(`<a rel="next" href="([^"]+)">next 1`)
	var seen []string
	path := "/?limit=1"
	for range 5 {
		code, body := get(t, td.url+path)
		require.Equal(t, http.StatusOK, code, body)
		rows := portRow.FindAllStringSubmatch(body, -1)
		require.Len(t, rows, 1, "one port a page")
		seen = append(seen, rows[0][1])
		require.Contains(t, body, fmt.Sprintf("%d&ndash;%d of 3", len(seen), len(seen)))
		m := next.FindStringSubmatch(body)
		if m == nil {
			break
		}
		path = htmlUnescape(m[1])
	}
	require.Equal(t, []string{"22", "23", "80"}, seen)

	code, body := get(t, td.url+"/?limit=0")
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, `limit="0"`)
	code, body = get(t, td.url+"/?target=alpha&offset=2")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, portRow.FindAllStringSubmatch(body, -1), 1)
	require.Contains(t, body, "3&ndash;3 of 3")
}

func htmlUnescape(s string) string {
	return regexp.MustCompile(`&amp;`).ReplaceAllString(s, "&")
}
