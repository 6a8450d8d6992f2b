package store

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/snapshot"
)

// bigTarget is the reference target: 250 hosts, 1,000 open ports
// (4 per host) with services.
func bigTarget(at time.Time) *snapshot.Snapshot {
	sn := &snapshot.Snapshot{Target: "dc", ID: snapshot.NewID("dc", at), StartedAt: at, FinishedAt: at.Add(40 * time.Second),
		Complete: true, Quality: snapshot.Quality{ProbesSent: 250_000, Replies: 250_000, Retransmits: 17, Closed: 249_000}}
	for h := range 250 {
		addr := netip.AddrFrom4([4]byte{198, 18, byte(h / 200), byte(h%200 + 1)}).String()
		host := snapshot.Host{Address: addr, Hostname: fmt.Sprintf("host%d.example.test", h), State: snapshot.HostUp,
			Unlisted: snapshot.Unlisted{TCPClosed: 996}}
		for i, p := range []uint16{22, 80, 443, uint16(8000 + h)} {
			host.Ports = append(host.Ports, snapshot.Port{Port: p, Protocol: "tcp", State: snapshot.StateOpen,
				Service: &snapshot.Service{Name: []string{"ssh", "http", "https", "http-alt"}[i], Product: "Product",
					Version: "1.2.3", Info: "protocol 2.0", CPE: []string{"cpe:/a:vendor:product:1.2.3"}}})
		}
		sn.Hosts = append(sn.Hosts, host)
	}
	return sn
}

// growth commits n unchanged scans of bigTarget after a baseline and
// returns the growth per scan of bbolt's allocated size and of the file.
func growth(t testing.TB, s *Store, path string, n int) (perScan, filePerScan float64) {
	ctx := context.Background()
	at := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	state := make([]byte, 40_000) // a diff state of the size package diff keeps for 1,000 ports
	require.NoError(t, s.Commit(ctx, Commit{Snapshot: bigTarget(at), DiffState: state}))
	size0, err := s.Size()
	require.NoError(t, err)
	fi0, err := os.Stat(path)
	require.NoError(t, err)
	for i := 1; i <= n; i++ {
		sn := bigTarget(at.Add(time.Duration(i) * 15 * time.Minute))
		sn.Quality.Retransmits = uint64(i % 97)
		require.NoError(t, s.Commit(ctx, Commit{Snapshot: sn, DiffState: state}))
	}
	size1, err := s.Size()
	require.NoError(t, err)
	fi1, err := os.Stat(path)
	require.NoError(t, err)
	return float64(size1-size0) / float64(n), float64(fi1.Size()-fi0.Size()) / float64(n)
}

// TestUnchangedScanCost holds the storage budget: a complete scan that
// changes nothing adds well under 1 KB.
func TestUnchangedScanCost(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	path := t.TempDir() + "/size.db"
	s, err := Open(path, Options{NoSync: true})
	require.NoError(t, err)
	defer s.Close()
	perScan, filePerScan := growth(t, s, path, n)
	t.Logf("%d unchanged scans of 250 hosts / 1,000 open ports: %.0f bytes/scan allocated, %.0f bytes/scan file growth", n, perScan, filePerScan)
	require.Less(t, perScan, 1024.0)

	// Every one of them is still readable in full.
	got, err := s.LatestComplete("dc")
	require.NoError(t, err)
	require.Equal(t, 1000, got.OpenPorts())
	require.Equal(t, 250, got.HostsUp())
}

// BenchmarkUnchangedScan reports the bytes one unchanged scan adds, and
// the time a commit takes (with fsync).
func BenchmarkUnchangedScan(b *testing.B) {
	path := b.TempDir() + "/bench.db"
	s, err := Open(path, Options{})
	require.NoError(b, err)
	defer s.Close()
	b.ResetTimer()
	perScan, filePerScan := growth(b, s, path, b.N)
	b.ReportMetric(perScan, "bytes/scan")
	b.ReportMetric(filePerScan, "filebytes/scan")
}

func BenchmarkLatestComplete(b *testing.B) {
	s, _ := openTemp(b)
	ctx := context.Background()
	at := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	require.NoError(b, s.Commit(ctx, Commit{Snapshot: bigTarget(at)}))
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.LatestComplete("dc"); err != nil {
			b.Fatal(err)
		}
	}
}
