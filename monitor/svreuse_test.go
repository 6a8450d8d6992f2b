package monitor

import (
	"context"
	"net"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/scanner/service"
	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
	"github.com/prometheus/common/model"
)

// bannerPort is a loopback SSH-like listener that counts the connections
// service detection makes to it.
type bannerPort struct {
	ln    net.Listener
	mu    sync.Mutex
	conns int
}

func newBannerPort(t *testing.T) *bannerPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &bannerPort{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns++
			b.mu.Unlock()
			c.Write([]byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"))
			c.Close()
		}
	}()
	return b
}

func (b *bannerPort) port() uint16 { return uint16(b.ln.Addr().(*net.TCPAddr).Port) }

// take returns and resets the count. A detection may leave connections
// (of probes it no longer needed) in the accept queue when it returns, so
// take first waits for the listener to have accepted them.
func (b *bannerPort) take() int {
	time.Sleep(100 * time.Millisecond)
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.conns
	b.conns = 0
	return n
}

// TestIncrementalServiceDetection runs daemon jobs (real store, real
// detector on loopback listeners) and counts the ports -sV probes: none
// on an unchanged re-scan, a newly opened one, and all again once
// service_detection.refresh has passed.
func TestIncrementalServiceDetection(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "exposure.db"), store.Options{NoSync: true})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	det, err := service.New(service.Options{Intensity: 7, Timeout: 3 * time.Second, Logger: discardLogger()})
	require.NoError(t, err)
	m, err := newMetrics(prometheus.NewRegistry())
	require.NoError(t, err)

	a, b := newBannerPort(t), newBannerPort(t)
	var open []*bannerPort
	scan := func(ctx context.Context, tg *config.Target) (*snapshot.Snapshot, error) {
		h := snapshot.Host{Address: "127.0.0.1", State: snapshot.HostUp}
		for _, p := range open {
			h.Ports = append(h.Ports, snapshot.Port{Port: p.port(), Protocol: "tcp", State: snapshot.StateOpen})
		}
		snap := &snapshot.Snapshot{Target: tg.Name, Complete: true, Hosts: []snapshot.Host{h}}
		detectServices(ctx, det, snap)
		return snap, nil
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	deps := jobDeps{store: st, scan: scan, differ: &portDiffer{}, collector: newPortCollector(100),
		metrics: m, logger: discardLogger(), now: func() time.Time { return now },
		detections: newSVDetections()}
	tg := &config.Target{Name: "web"}
	tg.ServiceDetection = config.ServiceDetection{
		Enabled: true, Intensity: 7, Timeout: model.Duration(3 * time.Second), Refresh: model.Duration(time.Hour)}

	// probed runs one job a minute after the last one and returns the
	// listeners that were connected to, and the stored snapshot's services.
	probed := func(step time.Duration) ([]string, []string) {
		now = now.Add(step)
		out := runScan(context.Background(), deps, tg, config.Global{}, planInfo{})
		require.Equal(t, resultSuccess, out.Result, out.Err)
		var got []string
		for name, p := range map[string]*bannerPort{"a": a, "b": b} {
			if p.take() > 0 {
				got = append(got, name)
			}
		}
		sort.Strings(got)
		latest, err := st.LatestComplete("web")
		require.NoError(t, err)
		var svcs []string
		for _, p := range latest.Hosts[0].Ports {
			svcs = append(svcs, p.Service.Describe())
		}
		return got, svcs
	}
	ssh := "ssh OpenSSH 9.2p1 Debian 2 (protocol 2.0)"

	open = []*bannerPort{a}
	got, svcs := probed(0)
	require.Equal(t, []string{"a"}, got, "baseline")
	require.Equal(t, []string{ssh}, svcs)

	got, svcs = probed(time.Minute)
	require.Empty(t, got, "(a) unchanged re-scan probes no port")
	require.Equal(t, []string{ssh}, svcs, "the copied service is stored")

	open = []*bannerPort{a, b}
	got, svcs = probed(time.Minute)
	require.Equal(t, []string{"b"}, got, "(b) only the newly opened port is probed")
	require.Equal(t, []string{ssh, ssh}, svcs)

	// a was detected 2 min ago, b 0: after 59 more minutes a's refresh has
	// passed (detection times are kept across copies), b's has not.
	got, _ = probed(59 * time.Minute)
	require.Equal(t, []string{"a"}, got, "(c) a is re-probed once refresh has passed")
	got, _ = probed(2 * time.Minute)
	require.Equal(t, []string{"b"}, got, "(c) then b")
	got, _ = probed(time.Minute)
	require.Empty(t, got)
	// refresh 0, the default: every open port is probed every scan, so a
	// version change behind an open port is seen at once.
	tg.ServiceDetection.Refresh = 0
	got, _ = probed(time.Minute)
	require.Equal(t, []string{"a", "b"}, got, "refresh 0 probes every open port")
	got, _ = probed(time.Minute)
	require.Equal(t, []string{"a", "b"}, got, "refresh 0 probes every open port")
}

// memcacheUDP is a loopback UDP server answering memcached's UDP stats
// request, counting the requests it gets.
type memcacheUDP struct {
	c  net.PacketConn
	mu sync.Mutex
	n  int
}

func newMemcacheUDP(t *testing.T) *memcacheUDP {
	t.Helper()
	// 11211 is the port the UDP probe is registered for; an address of
	// its own in 127/8 keeps it clear of anything else on the machine.
	c, err := net.ListenPacket("udp", "127.77.0.1:11211")
	if err != nil {
		t.Skipf("cannot bind 127.77.0.1:11211/udp: %v", err)
	}
	m := &memcacheUDP{c: c}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 8 {
				continue
			}
			m.mu.Lock()
			m.n++
			m.mu.Unlock()
			reply := append(append([]byte(nil), buf[:2]...), "\x00\x00\x00\x01\x00\x00STAT pid 7\r\nSTAT version 1.6.18\r\nEND\r\n"...)
			_, _ = c.WriteTo(reply, from)
		}
	}()
	return m
}

func (m *memcacheUDP) take() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.n
	m.n = 0
	return n
}

// TestIncrementalServiceDetectionUDP: an open UDP port gets its service
// from UDP -sV in a daemon job, keeps it unprobed on the re-scans within
// service_detection.refresh, and is probed every scan with refresh 0.
func TestIncrementalServiceDetectionUDP(t *testing.T) {
	srv := newMemcacheUDP(t)
	st, err := store.Open(filepath.Join(t.TempDir(), "exposure.db"), store.Options{NoSync: true})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	det, err := service.New(service.Options{Intensity: 7, Timeout: 3 * time.Second, Logger: discardLogger()})
	require.NoError(t, err)
	m, err := newMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	scan := func(ctx context.Context, tg *config.Target) (*snapshot.Snapshot, error) {
		h := snapshot.Host{Address: "127.77.0.1", State: snapshot.HostUp, Ports: []snapshot.Port{
			{Port: 11211, Protocol: "udp", State: snapshot.StateOpen},
			{Port: 11212, Protocol: "udp", State: snapshot.StateOpenFiltered},
		}}
		snap := &snapshot.Snapshot{Target: tg.Name, Complete: true, Hosts: []snapshot.Host{h}}
		detectServices(ctx, det, snap)
		return snap, nil
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	deps := jobDeps{store: st, scan: scan, differ: &portDiffer{}, collector: newPortCollector(100),
		metrics: m, logger: discardLogger(), now: func() time.Time { return now }, detections: newSVDetections()}
	tg := &config.Target{Name: "cache"}
	tg.ServiceDetection = config.ServiceDetection{
		Enabled: true, Intensity: 7, Timeout: model.Duration(3 * time.Second), Refresh: model.Duration(time.Hour)}
	run := func() (int, string) {
		now = now.Add(time.Minute)
		out := runScan(context.Background(), deps, tg, config.Global{}, planInfo{})
		require.Equal(t, resultSuccess, out.Result, out.Err)
		latest, err := st.LatestComplete("cache")
		require.NoError(t, err)
		require.Nil(t, latest.Hosts[0].Ports[1].Service, "open|filtered is not probed")
		return srv.take(), latest.Hosts[0].Ports[0].Service.Describe()
	}
	n, svc := run()
	require.Positive(t, n, "baseline probes 11211/udp")
	require.Equal(t, "memcache Memcached 1.6.18", svc)
	n, svc = run()
	require.Zero(t, n, "within refresh the service is copied, not probed")
	require.Equal(t, "memcache Memcached 1.6.18", svc)
	tg.ServiceDetection.Refresh = 0
	n, _ = run()
	require.Positive(t, n, "refresh 0 probes every scan")
}
