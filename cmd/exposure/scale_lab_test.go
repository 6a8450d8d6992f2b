package main

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/snapshot"
)

// TestLabScaleScan runs `exposure scan -p 22,80 --format json` (the streamed
// document) and the text report on a /20 scale lab: exactly the lab's
// 6,144 open ports, every one of its 4,096 addresses up, in address order.
func TestLabScaleScan(t *testing.T) {
	s := lab.NewScale(t, 20)
	code, out, errs := runCLI(t, "scan", "-n", "-e", s.Interface(), "-p", "22,80", "--format", "json", s.Prefix().String())
	require.Equal(t, 0, code, errs)
	var snap snapshot.Snapshot
	require.NoError(t, json.Unmarshal([]byte(out), &snap))
	require.True(t, snap.Complete)
	require.Len(t, snap.Hosts, int(s.Size()))
	open := 0
	for i, h := range snap.Hosts {
		a := netip.MustParseAddr(h.Address)
		require.Equal(t, s.Addr(uint64(i)), a)
		require.Equal(t, snapshot.HostUp, h.State)
		for _, p := range h.Ports {
			require.True(t, s.Open(a, p.Port), "%s:%d reported open", a, p.Port)
			open++
		}
	}
	require.Equal(t, int(s.OpenCount()), open)

	code, text, errs := runCLI(t, "scan", "-n", "-e", s.Interface(), "-p", "22,80", s.Prefix().String())
	require.Equal(t, 0, code, errs)
	require.Equal(t, int(s.OpenCount()), strings.Count(text, "/tcp open"))
	lines := strings.Split(strings.TrimSpace(text), "\n")
	require.Regexp(t, `^Exposure done: 4,?096 hosts up, 6,?144 open ports;`, lines[len(lines)-1])
}
