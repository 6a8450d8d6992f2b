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
	host := func(addr string, closed uint32, ports ...uint16) snapshot.Host {
		h := snapshot.Host{Address: addr, State: snapshot.HostUp, Unlisted: snapshot.Unlisted{TCPClosed: closed}}
		for _, p := range ports {
			h.Ports = append(h.Ports, snapshot.Port{Port: p, Protocol: "tcp", State: snapshot.StateOpen})
		}
		return h
	}
	t0 := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		hosts []snapshot.Host
		q     snapshot.Quality
		want  []string
	}{
		{[]snapshot.Host{host("127.0.0.1", 1, 22)}, snapshot.Quality{ProbesSent: 1, Replies: 1},
			[]string{"Not shown: 1 closed tcp port\n", "Exposure done: 1 host up, 1 open port; 1 probe, 0 retransmits, 1 reply in 1.00 seconds\n"}},
		{[]snapshot.Host{host("127.0.0.1", 1, 22, 80), host("127.0.0.2", 3)}, snapshot.Quality{ProbesSent: 6, Retransmits: 1, Replies: 2},
			[]string{"Not shown: 1 closed tcp port\n", "Not shown: 3 closed tcp ports\n",
				"Exposure done: 2 hosts up, 2 open ports; 6 probes, 1 retransmit, 2 replies in 1.00 seconds\n"}},
	} {
		var out bytes.Buffer
		sn := &snapshot.Snapshot{Complete: true, StartedAt: t0, FinishedAt: t0.Add(time.Second), Quality: tc.q, Hosts: tc.hosts}
		require.NoError(t, writeScanText(&out, sn, snapshotHosts(sn), false))
		for _, w := range tc.want {
			require.Contains(t, out.String(), w)
		}
	}
}

// TestScanTextNamesProtocols: the "Not shown" line names the protocols
// and states of the ports not listed, not "tcp" for a UDP scan, and the
// port lines are nmap's "53/udp open domain ISC BIND 9.18".
func TestScanTextNamesProtocols(t *testing.T) {
	udp := func(p uint16, state string, svc *snapshot.Service) snapshot.Port {
		return snapshot.Port{Port: p, Protocol: "udp", State: state, Service: svc}
	}
	bind := &snapshot.Service{Name: "domain", Product: "ISC BIND", Version: "9.18"}
	for _, tc := range []struct {
		name     string
		host     []snapshot.Port
		unlisted snapshot.Unlisted
		want     string
	}{
		{"udp only, silent ports listed", []snapshot.Port{udp(53, "open", bind), udp(69, "open|filtered", nil)},
			snapshot.Unlisted{UDPClosed: 1}, "Not shown: 1 closed udp port\n"},
		{"udp only, large", []snapshot.Port{udp(53, "open", bind)},
			snapshot.Unlisted{UDPClosed: 90, UDPOpenFiltered: 9}, "Not shown: 90 closed udp ports, 9 open|filtered udp ports\n"},
		{"both", []snapshot.Port{{Port: 22, Protocol: "tcp", State: "open"}, udp(53, "open", bind), udp(161, "open|filtered", nil)},
			snapshot.Unlisted{TCPClosed: 1, UDPClosed: 1}, "Not shown: 1 closed tcp port, 1 closed udp port\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sn := &snapshot.Snapshot{Complete: true, Hosts: []snapshot.Host{{Address: "198.18.0.2", State: snapshot.HostUp, Ports: tc.host, Unlisted: tc.unlisted}}}
			var out bytes.Buffer
			require.NoError(t, writeScanText(&out, sn, snapshotHosts(sn), true))
			require.Contains(t, out.String(), tc.want)
			if tc.unlisted.TCPClosed == 0 {
				require.NotContains(t, out.String(), "tcp", "a UDP scan says nothing of tcp")
			}
			require.Regexp(t, `(?m)^53/udp +open +domain +ISC BIND 9\.18$`, out.String())
		})
	}
}
