package snapshot

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWriteJSONMatchesEncoder: the streamed document is byte for byte what
// json.Encoder writes for the whole snapshot, the contract's shape.
func TestWriteJSONMatchesEncoder(t *testing.T) {
	at := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	full := &Snapshot{
		Target: "dmz <&>", ID: "dmz/1", StartedAt: at, FinishedAt: at.Add(3 * time.Second), Complete: true,
		Quality: Quality{ProbesSent: 3, Replies: 2, Closed: 1},
		Hosts: []Host{
			{Address: "198.18.0.2", Hostname: "mail.example.test", State: HostUp, Ports: []Port{
				{Port: 22, Protocol: "tcp", State: StateOpen, Service: &Service{Name: "ssh", Product: "OpenSSH", CPE: []string{"cpe:/a:openbsd:openssh"}}},
				{Port: 80, Protocol: "tcp", State: StateOpen, Service: &Service{Name: "http", Cert: &Cert{Subject: "CN=x", NotAfter: at}}},
			}},
			{Address: "198.18.0.3", State: HostUp, Ports: []Port{}, Unlisted: Unlisted{TCPClosed: 1000, UDPOpenFiltered: 3}},
			{Address: "198.18.0.4", Hostname: "<odd> \"name\"\u2028", State: HostUp, Ports: nil},
			{Address: "198.18.0.6", Hostname: "a<b&c>", State: HostUp, Ports: []Port{}},
			{Address: "198.18.0.5", State: HostUp, Ports: []Port{
				{Port: 1, Protocol: "tcp", State: StateOpen},
				{Port: 65535, Protocol: "udp", State: StateOpenFiltered},
				{Port: 443, Protocol: "tcp", State: StateOpen, Service: &Service{Name: "https", Tunnel: "ssl"}},
			}, Unlisted: Unlisted{TCPFiltered: 7}},
			{Address: "2001:2::1", State: HostDown, Ports: []Port{{Port: 443, Protocol: "tcp", State: StateFiltered}}},
		},
	}
	for _, tt := range []struct {
		name string
		snap *Snapshot
	}{
		{"hosts", full},
		{"no hosts", &Snapshot{Target: "t", ID: "t/1", StartedAt: at, FinishedAt: at, Hosts: []Host{}}},
		{"one host", &Snapshot{Target: "t", ID: "t/1", StartedAt: at, FinishedAt: at, Hosts: full.Hosts[1:2]}},
	} {
		for _, indent := range []string{"  ", "\t", ""} {
			var want, got bytes.Buffer
			enc := json.NewEncoder(&want)
			enc.SetIndent("", indent)
			require.NoError(t, enc.Encode(tt.snap))
			require.NoError(t, WriteJSON(&got, tt.snap, tt.snap.All(), indent))
			require.Equal(t, want.String(), got.String(), "%s, indent %q", tt.name, indent)
		}
	}
}
