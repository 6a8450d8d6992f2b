package monitor

import (
	"context"
	"fmt"
	"io"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/scanner/service"
	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/prometheus/common/model"
)

// bannerPort is a loopback SSH-like listener that counts the connections
// service detection makes to it; its banner can be changed.
type bannerPort struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  int
	banner string
}

func newBannerPort(t *testing.T) *bannerPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &bannerPort{ln: ln, banner: "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns++
			banner := b.banner
			b.mu.Unlock()
			// As sshd: the banner, then the connection stays until the
			// client goes (closing at once would reset the connections
			// of probes that send a payload, and lose the banner).
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = c.Write([]byte(banner))
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return b
}

func (b *bannerPort) port() uint16 { return uint16(b.ln.Addr().(*net.TCPAddr).Port) }

func (b *bannerPort) setBanner(s string) {
	b.mu.Lock()
	b.banner = s
	b.mu.Unlock()
}

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
// detector on loopback listeners) and checks what -sV does to each port:
// an unchanged re-scan keeps every detection after one connection per port
// (the cheap check), a newly opened port and a port whose banner changed
// are detected in full in the same scan, every port is detected in full
// again once within service_detection.refresh, and refresh 0 detects every
// port in full every scan.
func TestIncrementalServiceDetection(t *testing.T) {
	st, m := jobStoreAndMetrics(t)
	det, err := service.New(service.Options{Intensity: 7, Timeout: 3 * time.Second, Logger: discardLogger()})
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

	// step runs one job step after the last one and returns, per
	// listener, the connections it got, how many ports kept their
	// detection and how many were detected in full, and the stored
	// snapshot's services.
	var lastKept, lastFull float64
	type result struct {
		conns      map[string]int
		kept, full int
		svcs       map[uint16]string
	}
	step := func(d time.Duration) result {
		now = now.Add(d)
		out := runScan(context.Background(), deps, tg, config.Global{}, planInfo{})
		require.Equal(t, resultSuccess, out.Result, out.Err)
		r := result{conns: map[string]int{}, svcs: map[uint16]string{}}
		for name, p := range map[string]*bannerPort{"a": a, "b": b} {
			if n := p.take(); n > 0 {
				r.conns[name] = n
			}
		}
		kept := testutil.ToFloat64(m.svDetections.WithLabelValues("web", svKept))
		full := testutil.ToFloat64(m.svDetections.WithLabelValues("web", svFull))
		r.kept, r.full = int(kept-lastKept), int(full-lastFull)
		lastKept, lastFull = kept, full
		latest, err := st.LatestComplete("web")
		require.NoError(t, err)
		for _, p := range latest.Hosts[0].Ports {
			r.svcs[p.Port] = p.Service.Describe()
		}
		return r
	}
	ssh := "ssh OpenSSH 9.2p1 Debian 2 (protocol 2.0)"
	ssh96 := "ssh OpenSSH 9.6p1 Debian 4 (protocol 2.0)"

	// Steps (a) to (c) span 3 minutes. Each port's refresh falls at a
	// point of the hour its hash picks (TestRefreshSpread), and the
	// listeners' ports are random: start where neither port comes due
	// within those minutes, so that the steps see only the cheap check.
	keys := map[string]svKey{"a": mustSVKey(t, "127.0.0.1", a.port(), "tcp"), "b": mustSVKey(t, "127.0.0.1", b.port(), "tcp")}
	for quiet := false; !quiet; {
		quiet = true
		for _, k := range keys {
			if refreshDue("web", k, now.UnixNano(), now.Add(4*time.Minute).UnixNano(), time.Hour) {
				quiet = false
			}
		}
		if !quiet {
			now = now.Add(5 * time.Minute)
		}
	}

	open = []*bannerPort{a}
	r := step(0)
	require.Equal(t, 1, r.full, "baseline")
	require.Equal(t, map[uint16]string{a.port(): ssh}, r.svcs)

	r = step(time.Minute)
	require.Equal(t, 0, r.full, "(a) unchanged re-scan detects no port in full")
	require.Equal(t, 1, r.kept)
	require.Equal(t, map[string]int{"a": 1}, r.conns, "(a) the cheap check is one connection")
	require.Equal(t, map[uint16]string{a.port(): ssh}, r.svcs, "the kept service is stored")

	open = []*bannerPort{a, b}
	r = step(time.Minute)
	require.Equal(t, []int{1, 1}, []int{r.kept, r.full}, "(b) only the newly opened port is detected in full")
	require.Equal(t, 1, r.conns["a"])
	require.Equal(t, map[uint16]string{a.port(): ssh, b.port(): ssh}, r.svcs)

	a.setBanner("SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n")
	r = step(time.Minute)
	require.Equal(t, []int{1, 1}, []int{r.kept, r.full}, "(c) the changed banner is detected in full")
	require.Equal(t, map[uint16]string{a.port(): ssh96, b.port(): ssh}, r.svcs, "(c) the new version is found in the same scan")

	// (d) refresh: over the next hour, a scan every 2 minutes, each port is
	// detected in full exactly once (at a point of the hour its hash
	// picks) and kept at every other scan.
	fullAt := map[string][]int{}
	before := map[string]int64{}
	for name, k := range keys {
		before[name] = detectedAt(deps.detections, "web", k)
	}
	for i := 1; i <= 30; i++ {
		r = step(2 * time.Minute)
		require.Equal(t, 2, r.kept+r.full)
		for name, k := range keys {
			if at := detectedAt(deps.detections, "web", k); at != before[name] {
				fullAt[name] = append(fullAt[name], i)
				before[name] = at
			}
		}
	}
	require.Len(t, fullAt["a"], 1, "(d) a detected in full once within refresh: %v", fullAt)
	require.Len(t, fullAt["b"], 1, "(d) b detected in full once within refresh: %v", fullAt)

	// refresh 0: every open port is detected in full every scan.
	tg.ServiceDetection.Refresh = 0
	r = step(time.Minute)
	require.Equal(t, []int{0, 2}, []int{r.kept, r.full}, "refresh 0 detects every open port")
	r = step(time.Minute)
	require.Equal(t, []int{0, 2}, []int{r.kept, r.full}, "refresh 0 detects every open port")
}

// detectedAt is when k of target was last detected in full (0 for never).
func detectedAt(d *svDetections, target string, k svKey) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, _ := d.m[target].get(k)
	return e.at
}

func mustSVKey(t *testing.T, addr string, port uint16, proto string) svKey {
	t.Helper()
	k, ok := newSVKey(addr, port, proto)
	require.True(t, ok, addr)
	return k
}

// TestRefreshSpread checks that refreshDue spreads the full detections of
// ports detected together: 2,000 ports of a baseline, scanned every 15
// minutes with refresh 24h, each come due exactly once in the next 24h,
// and no scan gets more than three times its share.
func TestRefreshSpread(t *testing.T) {
	const ports, refresh, every = 2000, 24 * time.Hour, 15 * time.Minute
	base := time.Date(2026, 1, 1, 6, 0, 0, 0, time.UTC).UnixNano()
	at := make([]int64, ports)
	keys := make([]svKey, ports)
	for i := range keys {
		keys[i] = mustSVKey(t, fmt.Sprintf("198.18.%d.%d", i/256, i%256), 443, "tcp")
		at[i] = base
	}
	scans := int(refresh / every)
	perScan := make([]int, scans)
	for s := 1; s <= scans; s++ {
		now := base + int64(s)*int64(every)
		for i, k := range keys {
			if refreshDue("dmz", k, at[i], now, refresh) {
				perScan[s-1]++
				at[i] = now
			}
		}
	}
	total := 0
	for i, n := range perScan {
		total += n
		require.LessOrEqual(t, n, 3*ports/scans, "scan %d: %d of %d ports due at once", i+1, n, ports)
	}
	require.Equal(t, ports, total, "each port due once within refresh")
	for i := range at {
		require.Greater(t, at[i], base, "port %d never refreshed", i)
	}
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
	st, m := jobStoreAndMetrics(t)
	det, err := service.New(service.Options{Intensity: 7, Timeout: 3 * time.Second, Logger: discardLogger()})
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

// TestDetectionsOwnedByJob: a job owns its target's detections from plan
// to record or restore. record updates the table in place (a re-scan holds
// one table of the estate's ports, not two) and drops ports that closed; a
// second job of the target meanwhile keeps nothing; a job that records
// nothing gives the detections back.
func TestDetectionsOwnedByJob(t *testing.T) {
	require.LessOrEqual(t, unsafe.Sizeof(svEntry{}), uintptr(32), "an estate keeps one entry per open port")
	require.LessOrEqual(t, unsafe.Sizeof(svRecord{}), uintptr(56), "an estate keeps one record per open port")
	d := newSVDetections()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const refresh = 24 * time.Hour
	snapOf := func(ports ...uint16) *snapshot.Snapshot {
		s := &snapshot.Snapshot{Target: "t", Complete: true}
		h := snapshot.Host{Address: "198.18.0.1", State: snapshot.HostUp}
		for _, p := range ports {
			h.Ports = append(h.Ports, snapshot.Port{Port: p, Protocol: "tcp", State: snapshot.StateOpen})
		}
		s.Hosts = []snapshot.Host{h}
		return s
	}
	// detect runs a job's detection on s: a kept service where the plan
	// offers one, a full detection elsewhere.
	detect := func(r *svReuse, s *snapshot.Snapshot) {
		s.EachOpenPort(func(h *snapshot.Host, p *snapshot.Port) {
			if pr, ok := r.prior(h.Address, p.Port); ok {
				p.Service = pr.Service
				r.done(service.Detected{Address: h.Address, Port: p, Check: pr.Check, Kept: true})
				return
			}
			p.Service = &snapshot.Service{Name: "ssh", Product: "OpenSSH"}
			r.done(service.Detected{Address: h.Address, Port: p, Check: service.Check{Probe: "NULL", Sum: uint64(p.Port)}})
		})
	}
	mapID := func() uintptr {
		d.mu.Lock()
		defer d.mu.Unlock()
		return reflect.ValueOf(d.m["t"]).Pointer()
	}

	base := snapOf(22, 80, 443)
	r := d.plan("t", nil, now, refresh)
	detect(r, base)
	kept, full := d.record("t", base, r, now)
	require.Equal(t, [2]int{0, 3}, [2]int{kept, full}, "baseline: kept, full")
	id := mapID()

	now = now.Add(5 * time.Minute)
	r = d.plan("t", base, now, refresh)
	other := d.plan("t", base, now, refresh) // a run by hand meanwhile
	_, ok := other.prior("198.18.0.1", 22)
	require.False(t, ok, "a second job of the target must not read the detections the first one owns")
	next := snapOf(22, 80) // 443 closed
	detect(r, next)
	kept, full = d.record("t", next, r, now)
	require.Equal(t, [2]int{2, 0}, [2]int{kept, full}, "re-scan: kept, full")
	require.Equal(t, id, mapID(), "the re-scan must update the detections in place")
	d.mu.Lock()
	require.Len(t, d.m["t"], 2, "the closed port is forgotten")
	d.mu.Unlock()

	// An incomplete job records nothing and gives the detections back.
	now = now.Add(5 * time.Minute)
	r = d.plan("t", next, now, refresh)
	d.restore(r)
	r = d.plan("t", next, now, refresh)
	_, ok = r.prior("198.18.0.1", 80)
	require.True(t, ok, "after restore the next job keeps the service")

	// A port detected outside done (UDP detection) counts as detected in
	// full, stamped with this job.
	udp := snapOf(22, 80)
	udp.Hosts[0].Ports = append(udp.Hosts[0].Ports, snapshot.Port{Port: 53, Protocol: "udp", State: snapshot.StateOpen,
		Service: &snapshot.Service{Name: "domain"}})
	detect(r, udp)
	r.detected("198.18.0.1", &udp.Hosts[0].Ports[2], service.Check{})
	kept, full = d.record("t", udp, r, now)
	require.Equal(t, [2]int{2, 1}, [2]int{kept, full}, "with UDP: kept, full")
	k, _ := newSVKey("198.18.0.1", 53, "udp")
	d.mu.Lock()
	e, _ := d.m["t"].get(k)
	require.Equal(t, now.UnixNano(), e.at)
	d.mu.Unlock()
}
