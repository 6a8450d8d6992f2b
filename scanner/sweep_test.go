package scanner

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// verdictEngine answers every pair it is given with verdict(addr, port),
// stopping after limit pairs when limit > 0: Sweep's aggregation without a
// network.
type verdictEngine struct {
	verdict func(netip.Addr, uint16) string
	limit   int
}

func (v verdictEngine) Name() string { return "verdict" }

func (v verdictEngine) Scan(ctx context.Context, job Job, emit func(Result)) (Stats, error) {
	var st Stats
	for {
		a, p, ok := job.Pairs.Next()
		if !ok {
			return st, nil
		}
		if v.limit > 0 && int(st.ProbesSent) == v.limit {
			return st, context.Canceled
		}
		st.ProbesSent++
		s := v.verdict(a, p)
		if s != snapshot.StateFiltered {
			st.Replies++
		}
		emit(Result{Addr: a, Port: p, State: s})
	}
}

func TestSweep(t *testing.T) {
	// .1 has 22 and 443 open, the rest closed; .2 is silent (filtered);
	// .3 is .1 with ports 1-10 silent.
	verdict := func(a netip.Addr, p uint16) string {
		switch {
		case a == netip.MustParseAddr("198.18.0.2"),
			a == netip.MustParseAddr("198.18.0.3") && p <= 10:
			return snapshot.StateFiltered
		case p == 22 || p == 443:
			return snapshot.StateOpen
		default:
			return snapshot.StateClosed
		}
	}
	targets, err := spec.ParseTargets([]string{"198.18.0.1-2", "mail.example.test"}, nil)
	require.NoError(t, err)
	lookup := func(_ context.Context, host string) ([]netip.Addr, error) {
		require.Equal(t, "mail.example.test", host)
		return []netip.Addr{netip.MustParseAddr("198.18.0.3")}, nil
	}
	rlookup := func(_ context.Context, addr string) ([]string, error) {
		if addr == "198.18.0.1" {
			return []string{"gw.example.test."}, nil
		}
		return nil, errors.New("no PTR")
	}

	tests := []struct {
		name      string
		ports     string
		limit     int
		hosts     []snapshot.Host
		closed    uint64
		filtered  uint64
		complete  bool
		probeSent uint64
	}{
		{
			name:  "small scan lists filtered ports and silent hosts",
			ports: "22,80,443",
			hosts: []snapshot.Host{
				{Address: "198.18.0.1", Hostname: "gw.example.test", State: snapshot.HostUp, Ports: []snapshot.Port{
					{Port: 22, Protocol: "tcp", State: snapshot.StateOpen},
					{Port: 443, Protocol: "tcp", State: snapshot.StateOpen},
				}, Unlisted: snapshot.Unlisted{TCPClosed: 1}},
				{Address: "198.18.0.2", State: snapshot.HostDown, Ports: []snapshot.Port{
					{Port: 22, Protocol: "tcp", State: snapshot.StateFiltered},
					{Port: 80, Protocol: "tcp", State: snapshot.StateFiltered},
					{Port: 443, Protocol: "tcp", State: snapshot.StateFiltered},
				}},
				{Address: "198.18.0.3", Hostname: "mail.example.test", State: snapshot.HostUp, Ports: []snapshot.Port{
					{Port: 22, Protocol: "tcp", State: snapshot.StateOpen},
					{Port: 443, Protocol: "tcp", State: snapshot.StateOpen},
				}, Unlisted: snapshot.Unlisted{TCPClosed: 1}},
			},
			closed: 2, filtered: 3, complete: true, probeSent: 9,
		},
		{
			name:  "large scan counts filtered and omits silent hosts",
			ports: "1-100,443",
			hosts: []snapshot.Host{
				{Address: "198.18.0.1", Hostname: "gw.example.test", State: snapshot.HostUp, Ports: []snapshot.Port{
					{Port: 22, Protocol: "tcp", State: snapshot.StateOpen},
					{Port: 443, Protocol: "tcp", State: snapshot.StateOpen},
				}, Unlisted: snapshot.Unlisted{TCPClosed: 99}},
				// Its silent ports, some before anything of it answered,
				// are counted all the same.
				{Address: "198.18.0.3", Hostname: "mail.example.test", State: snapshot.HostUp, Ports: []snapshot.Port{
					{Port: 22, Protocol: "tcp", State: snapshot.StateOpen},
					{Port: 443, Protocol: "tcp", State: snapshot.StateOpen},
				}, Unlisted: snapshot.Unlisted{TCPClosed: 89, TCPFiltered: 10}},
			},
			closed: 99 + 89, filtered: 101 + 10, complete: true, probeSent: 303,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ports, err := spec.ParsePorts(tt.ports)
			require.NoError(t, err)
			var progress []uint64
			snap, err := Sweep(context.Background(), verdictEngine{verdict: verdict}, targets, SweepOptions{
				Target: "dmz", Ports: ports, ReverseDNS: true, Lookup: lookup, ReverseLookup: rlookup, Sequential: true,
				Progress: func(done, total uint64) { progress = append(progress, done) },
			})
			require.NoError(t, err)
			require.Equal(t, "dmz", snap.Target)
			require.Contains(t, snap.ID, "dmz/")
			require.Equal(t, tt.complete, snap.Complete)
			require.Equal(t, tt.hosts, snap.Hosts)
			require.Equal(t, tt.closed, snap.Quality.Closed)
			require.Equal(t, tt.filtered, snap.Quality.Filtered)
			require.Equal(t, tt.probeSent, snap.Quality.ProbesSent)
			require.False(t, snap.FinishedAt.Before(snap.StartedAt))
			require.Equal(t, tt.probeSent, progress[len(progress)-1])
		})
	}

	t.Run("cut short", func(t *testing.T) {
		ports, err := spec.ParsePorts("22,80,443")
		require.NoError(t, err)
		snap, err := Sweep(context.Background(), verdictEngine{verdict: verdict, limit: 4}, targets, SweepOptions{Target: "dmz", Ports: ports, Lookup: lookup})
		require.NoError(t, err, "a cancelled scan is an incomplete snapshot, not an error")
		require.False(t, snap.Complete)
	})
}

func TestCleanHostname(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a.example.test.", "a.example.test"},
		{"host-1_x.example.test", "host-1_x.example.test"},
		{"evil\x1b[31m.example.test", ""},
		{"line\nbreak.test", ""},
		{"caf\u00e9.test", ""},
		{".", ""},
		{strings.Repeat("a", 254), ""},
		{strings.Repeat("a", 253), strings.Repeat("a", 253)},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, cleanHostname(tt.in), "%q", tt.in)
	}
}
