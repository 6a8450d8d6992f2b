package monitor

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	rtmetrics "runtime/metrics"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/scanner/service"
	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
)

// estateScan is a scan function for a /16 of the scale lab's shape
// (port 80 on every address, 22 on the even ones: 98,304 open ports)
// without a network: it builds the sweep's snapshot and does what
// detectServices does with the job's reuse plan, a kept service where the
// plan offers one, a new one (as a detection makes) elsewhere.
func estateScan(ctx context.Context, tg *config.Target) (*snapshot.Snapshot, error) {
	snap := &snapshot.Snapshot{Target: tg.Name, Complete: true, Hosts: make([]snapshot.Host, 0, 1<<16)}
	for i := range 1 << 16 {
		h := snapshot.Host{Address: fmt.Sprintf("198.18.%d.%d", i>>8, i&0xff), State: snapshot.HostUp,
			Unlisted: snapshot.Unlisted{TCPClosed: 1}}
		if i%2 == 0 {
			h.Ports = []snapshot.Port{{Port: 22, Protocol: "tcp", State: snapshot.StateOpen}, {Port: 80, Protocol: "tcp", State: snapshot.StateOpen}}
			h.Unlisted.TCPClosed = 0
		} else {
			h.Ports = []snapshot.Port{{Port: 80, Protocol: "tcp", State: snapshot.StateOpen}}
		}
		snap.Hosts = append(snap.Hosts, h)
	}
	r := reuseFrom(ctx)
	for hi := range snap.Hosts {
		h := &snap.Hosts[hi]
		for pi := range h.Ports {
			p := &h.Ports[pi]
			if pr, ok := r.prior(h.Address, p.Port); ok {
				p.Service = pr.Service
				r.done(service.Detected{Address: h.Address, Port: p, Check: pr.Check, Kept: true})
				continue
			}
			if p.Port == 22 {
				p.Service = &snapshot.Service{Name: "ssh", Product: "OpenSSH", Version: "9.2p1 Debian 2+deb12u7", Info: "protocol 2.0",
					CPE: []string{"cpe:/a:openbsd:openssh:9.2p1", "cpe:/o:linux:linux_kernel"}}
			} else {
				p.Service = &snapshot.Service{Name: "http", Product: "nginx", Version: "1.22.1", CPE: []string{"cpe:/a:igor_sysoev:nginx:1.22.1"}}
			}
			r.done(service.Detected{Address: h.Address, Port: p, Check: service.Check{Probe: "NULL", Sum: uint64(p.Port)}})
		}
	}
	return snap, nil
}

// jobStoreAndMetrics opens a real store in a temporary directory and the
// job metrics, for tests that run jobs.
func jobStoreAndMetrics(tb testing.TB) (*store.Store, *metrics) {
	tb.Helper()
	st, err := store.Open(filepath.Join(tb.TempDir(), "exposure.db"), store.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	return st, m
}

// peakHeap samples the live heap every few milliseconds until stop.
func peakHeap() (stop func() uint64) {
	var (
		peak uint64
		wg   sync.WaitGroup
		done = make(chan struct{})
	)
	sample := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			rtmetrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak }
}

// BenchmarkEstateJob runs daemon jobs on a /16 with 98,304 open ports
// (real store, the job's diff, commit, detections and collector; the
// sweep and -sV replaced by estateScan): the baseline, then unchanged
// re-scans. It reports the peak live heap of a re-scan and the live heap
// the daemon keeps after it.
func BenchmarkEstateJob(b *testing.B) {
	st, m := jobStoreAndMetrics(b)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	deps := jobDeps{store: st, scan: estateScan, differ: diffWithConfirm{}, collector: newPortCollector(config.DefaultSeriesBudget),
		metrics: m, logger: discardLogger(), now: func() time.Time { return now }, detections: newSVDetections()}
	tg := &config.Target{Name: "estate"}
	tg.ServiceDetection = config.ServiceDetection{Enabled: true, Refresh: model.Duration(24 * time.Hour)}
	run := func() {
		now = now.Add(5 * time.Minute)
		if out := runScan(context.Background(), deps, tg, config.Global{}, planInfo{}); out.Result != resultSuccess || out.OpenPorts != 98304 {
			b.Fatalf("%s: %d open ports, %s", out.Result, out.OpenPorts, out.Err)
		}
	}
	rate := runtime.MemProfileRate
	runtime.MemProfileRate = 0 // a -memprofile shows the re-scans
	stop := peakHeap()
	run()
	basePeak := stop()
	runtime.MemProfileRate = rate
	var peak, kept uint64
	b.ResetTimer()
	for range b.N {
		runtime.GC()
		stop := peakHeap()
		run()
		peak = max(peak, stop())
	}
	b.StopTimer()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	kept = ms.HeapAlloc
	runtime.KeepAlive(deps) // what the daemon keeps: collector, detections
	b.ReportMetric(float64(basePeak)/1e6, "baseline-peak-MB")
	b.ReportMetric(float64(peak)/1e6, "rescan-peak-MB")
	b.ReportMetric(float64(kept)/1e6, "kept-MB")
}

// TestPreviousFromCollector: a job takes the previous complete snapshot
// from the collector only while the store says it is still the latest;
// otherwise (an import or another writer committed since) from the store.
func TestPreviousFromCollector(t *testing.T) {
	st, _ := jobStoreAndMetrics(t)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(n int) *snapshot.Snapshot {
		s := testSnapshot("web", true, openPort(uint16(22+n), nil))
		s.StartedAt, s.FinishedAt = at.Add(time.Duration(n)*time.Minute), at.Add(time.Duration(n)*time.Minute+time.Second)
		s.ID = snapshot.NewID("web", s.StartedAt)
		if err := st.Commit(context.Background(), store.Commit{Snapshot: s}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	first, second := mk(1), mk(2)
	c := newPortCollector(10)
	reads := &countingLatest{latestStore: st}
	c.set(second)
	got, err := latestComplete(reads, c, "web")
	require.NoError(t, err)
	require.Equal(t, second, got, "the collector's copy, unpacked")
	require.Zero(t, reads.n, "the store's snapshot was decoded")
	c.set(first)
	got, err = latestComplete(reads, c, "web")
	if err != nil || got.ID != second.ID || got.Hosts[0].Ports[0].Port != 24 || reads.n != 1 {
		t.Fatalf("previous = %+v, %v (%d store reads); want the store's %s", got, err, reads.n, second.ID)
	}
}

// countingLatest counts the snapshots read from the store.
type countingLatest struct {
	latestStore
	n int
}

func (c *countingLatest) LatestComplete(target string) (*snapshot.Snapshot, error) {
	c.n++
	return c.latestStore.LatestComplete(target)
}

// TestUnchangedJobKeepsDiffState: with the real differ, an unchanged scan
// leaves the stored diff state byte for byte as it was (so the commit
// does not rewrite it), and the store grows by well under 1 KB a scan.
func TestUnchangedJobKeepsDiffState(t *testing.T) {
	st, m := jobStoreAndMetrics(t)
	svcs := []*snapshot.Service{
		{Name: "ssh", Product: "OpenSSH", Version: "9.2p1", CPE: []string{"cpe:/a:openbsd:openssh:9.2p1"}},
		{Name: "http", Product: "nginx", Version: "1.22.1", CPE: []string{}},
		{Name: "http", Product: "Apache httpd", Version: "2.4.62", CPE: []string{}},
	}
	scan := func(_ context.Context, tg *config.Target) (*snapshot.Snapshot, error) {
		snap := &snapshot.Snapshot{Target: tg.Name, Complete: true}
		for i := range 250 {
			h := snapshot.Host{Address: fmt.Sprintf("198.18.0.%d", i+1), State: snapshot.HostUp}
			for j, port := range []uint16{22, 80, 443, 8080} {
				sv := *svcs[(i+j)%len(svcs)] // a copy per port, as detection makes them
				h.Ports = append(h.Ports, snapshot.Port{Port: port, Protocol: "tcp", State: snapshot.StateOpen, Service: &sv})
			}
			snap.Hosts = append(snap.Hosts, h)
		}
		return snap, nil
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	deps := jobDeps{store: st, scan: scan, differ: diffWithConfirm{}, collector: newPortCollector(100),
		metrics: m, logger: discardLogger(), now: func() time.Time { return now }}
	tg := &config.Target{Name: "dc"}
	run := func() {
		now = now.Add(15 * time.Minute)
		if out := runScan(context.Background(), deps, tg, config.Global{}, planInfo{}); out.Result != resultSuccess || out.Changes != 0 {
			t.Fatalf("%s: %d changes, %s", out.Result, out.Changes, out.Err)
		}
	}
	run()
	run()
	state, err := st.DiffState("dc")
	if err != nil {
		t.Fatal(err)
	}
	size0, err := st.Size()
	if err != nil {
		t.Fatal(err)
	}
	const n = 30
	for range n {
		run()
		again, err := st.DiffState("dc")
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(state) {
			t.Fatalf("an unchanged scan changed the stored diff state (%d -> %d bytes)", len(state), len(again))
		}
	}
	size1, err := st.Size()
	if err != nil {
		t.Fatal(err)
	}
	if per := float64(size1-size0) / n; per > 1024 {
		t.Fatalf("%.0f bytes a scan", per)
	}
}

// releaseProbe is a job store whose ReleaseCache, which a large job calls
// right after its garbage collection (releaseMemory), runs at first.
type releaseProbe struct {
	jobStore
	at func()
}

func (p releaseProbe) ReleaseCache() error {
	p.at()
	return p.jobStore.ReleaseCache()
}

// TestReleaseAfterJobFreesTheJob: when a large job returns its memory, the
// job is already garbage: the previous snapshot (replaced in the
// collector) and the job's reuse plan are collected by that GC, not kept
// until the next one, which an idle daemon may not run for hours.
func TestReleaseAfterJobFreesTheJob(t *testing.T) {
	st, m := jobStoreAndMetrics(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var (
		snaps []weak.Pointer[snapshot.Snapshot]
		plans []weak.Pointer[svReuse]
	)
	scan := func(ctx context.Context, tg *config.Target) (*snapshot.Snapshot, error) {
		snap := &snapshot.Snapshot{Target: tg.Name, Complete: true}
		for i := range freeAfterPorts {
			h := snapshot.Host{Address: fmt.Sprintf("198.18.%d.%d", i>>8, i&0xff), State: snapshot.HostUp,
				Ports: []snapshot.Port{{Port: 80, Protocol: "tcp", State: snapshot.StateOpen,
					Service: &snapshot.Service{Name: "http", Product: "nginx", Version: "1.22.1"}}}}
			snap.Hosts = append(snap.Hosts, h)
		}
		r := reuseFrom(ctx)
		if r == nil {
			t.Fatal("no reuse plan")
		}
		snaps, plans = append(snaps, weak.Make(snap)), append(plans, weak.Make(r))
		return snap, nil
	}
	released := 0
	probe := releaseProbe{jobStore: st, at: func() {
		released++
		// The GC of releaseMemory has run. Everything but the latest
		// snapshot (the collector's) is unreachable.
		for i, w := range snaps[:len(snaps)-1] {
			if w.Value() != nil {
				t.Errorf("release %d: the snapshot of job %d is still reachable", released, i+1)
			}
		}
		for i, w := range plans {
			if w.Value() != nil {
				t.Errorf("release %d: the reuse plan of job %d is still reachable", released, i+1)
			}
		}
	}}
	deps := jobDeps{store: probe, scan: scan, differ: diffWithConfirm{}, collector: newPortCollector(100),
		metrics: m, logger: discardLogger(), now: func() time.Time { return now }, detections: newSVDetections()}
	tg := &config.Target{Name: "estate"}
	tg.ServiceDetection = config.ServiceDetection{Enabled: true, Refresh: model.Duration(24 * time.Hour)}
	for range 3 {
		now = now.Add(5 * time.Minute)
		if out := runScan(context.Background(), deps, tg, config.Global{}, planInfo{}); out.Result != resultSuccess {
			t.Fatalf("%s: %s", out.Result, out.Err)
		}
	}
	if released != 3 {
		t.Fatalf("released %d times, want 3 (one per job of %d open ports)", released, freeAfterPorts)
	}
}
