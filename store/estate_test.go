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

// BenchmarkPruneYear stores a year of daily scans of an estate (a /20's
// 6,144 open ports; EXPOSURE_BENCH_OCTETS=256 for the /16) in which every
// day 2% of the services change version, 1% of the ports close and as many
// reopen, with a change record for each, then prunes to 90 days while a
// scan commits every 50 ms, as the daemon's would. It reports the prune's
// time and the longest a concurrent commit took (commit-max-ms), next to
// the same commit's time without a prune running (commit-idle-ms), and the
// longest transaction of the prune (longest-prune-tx-ms): the most a
// commit can wait for it. With
// -benchtime=1x it runs once.
func BenchmarkPruneYear(b *testing.B) {
	octets := 16
	if v := os.Getenv("EXPOSURE_BENCH_OCTETS"); v != "" {
		_, err := fmt.Sscan(v, &octets)
		require.NoError(b, err)
	}
	for _, batch := range []int{defaultPruneBatch, 1 << 30} {
		name := "batched"
		if batch > defaultPruneBatch {
			name = "one-transaction-per-bucket"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				pruneYear(b, octets, batch)
			}
		})
	}
}

func pruneYear(b *testing.B, octets, batch int) {
	b.StopTimer()
	path := b.TempDir() + "/year.db"
	s, err := Open(path, Options{NoSync: true})
	require.NoError(b, err)
	defer s.Close()
	s.pruneBatch = batch
	ctx := context.Background()
	day0 := time.Date(2025, 11, 25, 6, 0, 0, 0, time.UTC)
	sn := estate(day0, octets)
	require.NoError(b, s.Commit(ctx, Commit{Snapshot: sn}))
	ports := sn.OpenPorts()
	for d := 1; d < 365; d++ {
		at := day0.Add(time.Duration(d) * 24 * time.Hour)
		next := *sn
		next.ID, next.StartedAt, next.FinishedAt = snapshot.NewID("estate", at), at, at.Add(time.Minute)
		next.Hosts = append([]snapshot.Host(nil), sn.Hosts...)
		var changes []snapshot.Change
		for i := range ports / 50 { // 2% change version
			h := &next.Hosts[(d*7919+i*104729)%len(next.Hosts)]
			h.Ports = append([]snapshot.Port(nil), h.Ports...)
			p := &h.Ports[len(h.Ports)-1]
			svc := *p.Service
			svc.Version = fmt.Sprintf("1.%d.%d", d, i)
			p.Service = &svc
			changes = append(changes, snapshot.Change{Kind: snapshot.VersionChanged, Address: h.Address, Port: p.Port, Protocol: "tcp"})
		}
		for i := range ports / 100 { // 1% close, the 1% closed yesterday reopen
			h := &next.Hosts[(d*104723+i*7907)%len(next.Hosts)]
			if len(h.Ports) == 2 {
				h.Ports = h.Ports[1:]
				changes = append(changes, snapshot.Change{Kind: snapshot.PortClosed, Address: h.Address, Port: 22, Protocol: "tcp"})
			}
		}
		require.NoError(b, s.Commit(ctx, Commit{Snapshot: &next, Changes: changes}))
		// Tomorrow starts from the full estate again: the closed reopen.
		sn.Hosts = estate(at, octets).Hosts
		for hi := range next.Hosts {
			if len(next.Hosts[hi].Ports) == 2 {
				sn.Hosts[hi].Ports = next.Hosts[hi].Ports
			}
		}
	}
	size, err := s.Size()
	require.NoError(b, err)

	last := day0.Add(364 * 24 * time.Hour)
	commitOnce := func(i int) time.Duration {
		at := last.Add(time.Duration(i) * time.Minute)
		c := *sn
		c.ID, c.StartedAt, c.FinishedAt = snapshot.NewID("estate", at), at, at.Add(time.Second)
		start := time.Now()
		require.NoError(b, s.Commit(ctx, Commit{Snapshot: &c}))
		return time.Since(start)
	}
	var idle time.Duration
	for i := 1; i <= 5; i++ {
		idle = max(idle, commitOnce(i))
	}
	done := make(chan struct{})
	worst := make(chan time.Duration)
	go func() {
		var w time.Duration
		for i := 10; ; i++ {
			select {
			case <-done:
				worst <- w
				return
			case <-time.After(50 * time.Millisecond):
			}
			w = max(w, commitOnce(i))
		}
	}()
	b.StartTimer()
	start := time.Now()
	n, err := s.Prune(ctx, last.Add(-90*24*time.Hour))
	took := time.Since(start)
	b.StopTimer()
	close(done)
	w := <-worst
	require.NoError(b, err)
	require.Equal(b, 364-90, n)
	size2, err := s.Size()
	require.NoError(b, err)
	b.ReportMetric(float64(ports), "open-ports")
	b.ReportMetric(float64(size)/1e6, "MB-before")
	b.ReportMetric(float64(size2)/1e6, "MB-after")
	b.ReportMetric(took.Seconds(), "prune-s")
	b.ReportMetric(float64(idle.Milliseconds()), "commit-idle-ms")
	b.ReportMetric(float64(w.Milliseconds()), "commit-max-ms")
	b.ReportMetric(float64(time.Duration(s.pruneLongest.Load()).Milliseconds()), "longest-prune-tx-ms")
}
