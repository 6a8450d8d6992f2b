package store

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/snapshot"
)

// estate is issue 15's reference estate, cut to the first octets*256
// hosts of 198.18.0.0/16: 80/tcp (nginx) open on every host, 22/tcp
// (OpenSSH) on every other one, services as -sV reports them.
func estate(at time.Time, octets int) *snapshot.Snapshot {
	sn := &snapshot.Snapshot{Target: "estate", ID: snapshot.NewID("estate", at), StartedAt: at, FinishedAt: at.Add(time.Minute),
		Complete: true, Quality: snapshot.Quality{ProbesSent: uint64(octets) * 512, Replies: uint64(octets) * 512}}
	ssh := &snapshot.Service{Name: "ssh", Product: "OpenSSH", Version: "9.2p1 Debian 2+deb12u3", Info: "protocol 2.0",
		CPE: []string{"cpe:/a:openbsd:openssh:9.2p1"}}
	web := &snapshot.Service{Name: "http", Product: "nginx", Version: "1.22.1", CPE: []string{"cpe:/a:igor_sysoev:nginx:1.22.1"}}
	for a := range octets {
		for b := range 256 {
			h := snapshot.Host{Address: netip.AddrFrom4([4]byte{198, 18, byte(a), byte(b)}).String(), State: snapshot.HostUp}
			if b%2 == 0 {
				h.Ports = append(h.Ports, snapshot.Port{Port: 22, Protocol: "tcp", State: snapshot.StateOpen, Service: ssh})
			}
			h.Ports = append(h.Ports, snapshot.Port{Port: 80, Protocol: "tcp", State: snapshot.StateOpen, Service: web})
			sn.Hosts = append(sn.Hosts, h)
		}
	}
	return sn
}

// TestEstateBytesPerOpenPort commits the baseline of the estate (the /16's
// 98,304 open ports; a /20's 6,144 with -short) and an unchanged scan to a
// real bbolt file and reports the bytes per open port, of bbolt's
// allocated size and of the file.
func TestEstateBytesPerOpenPort(t *testing.T) {
	octets := 256
	if testing.Short() {
		octets = 64
	}
	path := t.TempDir() + "/estate.db"
	s, err := Open(path, Options{NoSync: true})
	require.NoError(t, err)
	defer s.Close()
	at := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	base := estate(at, octets)
	open := base.OpenPorts()
	size0, err := s.Size()
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, s.Commit(context.Background(), Commit{Snapshot: base}))
	took := time.Since(start)
	size1, err := s.Size()
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	perPort := float64(size1-size0) / float64(open)
	t.Logf("baseline of %d open ports: %.0f B per open port allocated (%d bytes), file %d bytes (%.0f B per open port), commit %v",
		open, perPort, size1-size0, fi.Size(), float64(fi.Size())/float64(open), took.Round(time.Millisecond))
	require.LessOrEqual(t, perPort, 300.0, "baseline bytes per open port")

	require.NoError(t, s.Commit(context.Background(), Commit{Snapshot: estate(at.Add(24*time.Hour), octets)}))
	size2, err := s.Size()
	require.NoError(t, err)
	t.Logf("unchanged re-scan: %d bytes allocated", size2-size1)
	require.Less(t, size2-size1, int64(16<<10), "an unchanged scan of the estate adds next to nothing")

	got, err := s.LatestComplete("estate")
	require.NoError(t, err)
	require.Equal(t, open, got.OpenPorts())
}
