package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/snapshot"
)

func TestCounted(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{{0, "0 changes"}, {1, "1 change"}, {2, "2 changes"}} {
		require.Equal(t, tc.want, counted(tc.n, "change", "changes"))
	}
}

func TestScanTextPlurals(t *testing.T) {
	host := func(addr string, ports ...uint16) snapshot.Host {
		h := snapshot.Host{Address: addr, State: snapshot.HostUp}
		for _, p := range ports {
			h.Ports = append(h.Ports, snapshot.Port{Port: p, Protocol: "tcp", State: snapshot.StateOpen})
		}
		return h
	}
	t0 := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		hosts  []snapshot.Host
		q      snapshot.Quality
		nports int
		want   []string
	}{
		{[]snapshot.Host{host("127.0.0.1", 22)}, snapshot.Quality{ProbesSent: 1, Replies: 1}, 2,
			[]string{"Not shown: 1 closed tcp port\n", "Exposure done: 1 host up, 1 open port; 1 probe, 0 retransmits, 1 reply in 1.00 seconds\n"}},
		{[]snapshot.Host{host("127.0.0.1", 22, 80), host("127.0.0.2")}, snapshot.Quality{ProbesSent: 6, Retransmits: 1, Replies: 2}, 3,
			[]string{"Not shown: 1 closed tcp port\n", "Not shown: 3 closed tcp ports\n",
				"Exposure done: 2 hosts up, 2 open ports; 6 probes, 1 retransmit, 2 replies in 1.00 seconds\n"}},
	} {
		var out bytes.Buffer
		sn := &snapshot.Snapshot{Complete: true, StartedAt: t0, FinishedAt: t0.Add(time.Second), Quality: tc.q, Hosts: tc.hosts}
		require.NoError(t, writeScanText(&out, sn, snapshotHosts(sn), tc.nports, false))
		for _, w := range tc.want {
			require.Contains(t, out.String(), w)
		}
	}
}
