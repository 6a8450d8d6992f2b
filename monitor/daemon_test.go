package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
)

// fakeNet is the "network" of the daemon tests: the ports open per target,
// changed by the test between scans.
type fakeNet struct {
	mu    sync.Mutex
	open  map[string][]uint16
	fail  map[string]error
	block map[string]bool
	scans map[string]int
}

func newFakeNet() *fakeNet {
	return &fakeNet{open: map[string][]uint16{}, fail: map[string]error{}, block: map[string]bool{}, scans: map[string]int{}}
}

func (n *fakeNet) set(target string, ports ...uint16) {
	n.mu.Lock()
	n.open[target] = ports
	n.mu.Unlock()
}

func (n *fakeNet) scan(ctx context.Context, t *config.Target) (*snapshot.Snapshot, error) {
	n.mu.Lock()
	n.scans[t.Name]++
	ports, err, block := n.open[t.Name], n.fail[t.Name], n.block[t.Name]
	n.mu.Unlock()
	if block {
		<-ctx.Done()
		return &snapshot.Snapshot{Target: t.Name, Complete: false, Hosts: []snapshot.Host{}}, nil
	}
	if err != nil {
		return nil, err
	}
	h := snapshot.Host{Address: "127.0.0.1", State: snapshot.HostUp}
	for _, p := range ports {
		h.Ports = append(h.Ports, snapshot.Port{Port: p, Protocol: "tcp", State: snapshot.StateOpen,
			Service: &snapshot.Service{Name: "ssh", Product: "OpenSSH", Version: "9.2p1"}})
	}
	return &snapshot.Snapshot{Target: t.Name, Complete: true, Hosts: []snapshot.Host{h},
		Quality: snapshot.Quality{ProbesSent: 10}}, nil
}

func (n *fakeNet) count(target string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.scans[target]
}

// portDiffer reports port_opened and port_closed between two complete
// snapshots of one host, and a forbidden_open verdict for port 23. It
// stands in for the diff package in the daemon tests; the job test runs
// against it too.
type portDiffer struct {
	mu    sync.Mutex
	calls int
}

func (p *portDiffer) diff(_ context.Context, prev, cur *snapshot.Snapshot, state json.RawMessage, t *config.Target, _ config.Global) (diffResult, error) {
	p.mu.Lock()
	p.calls++
	p.mu.Unlock()
	open := func(s *snapshot.Snapshot) map[uint16]bool {
		m := map[uint16]bool{}
		if s != nil {
			for _, h := range s.Hosts {
				for _, pt := range h.Ports {
					m[pt.Port] = true
				}
			}
		}
		return m
	}
	var r diffResult
	before, after := open(prev), open(cur)
	for port := range after {
		if port == 23 {
			r.Conditions = append(r.Conditions, snapshot.Change{Kind: snapshot.ForbiddenOpen, Address: "127.0.0.1", Port: port, Protocol: "tcp"})
		}
		if prev != nil && !before[port] {
			r.Changes = append(r.Changes, snapshot.Change{Kind: snapshot.PortOpened, Target: t.Name, Address: "127.0.0.1", Port: port, Protocol: "tcp", Snapshot: cur.ID})
		}
	}
	for port := range before {
		if !after[port] {
			r.Changes = append(r.Changes, snapshot.Change{Kind: snapshot.PortClosed, Target: t.Name, Address: "127.0.0.1", Port: port, Protocol: "tcp", Snapshot: cur.ID})
		}
	}
	sort.Slice(r.Changes, func(i, j int) bool {
		a, b := r.Changes[i], r.Changes[j]
		return a.Kind > b.Kind || a.Kind == b.Kind && a.Port < b.Port
	})
	r.State = json.RawMessage(fmt.Sprintf(`{"scans":%d}`, len(state)+1))
	return r, nil
}

func (p *portDiffer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

type testDaemon struct {
	d      *daemonState
	url    string
	cfg    string
	db     string
	reg    *prometheus.Registry
	net    *fakeNet
	differ *portDiffer
	hup    chan os.Signal
	stop   func(*testing.T)

	mu     sync.Mutex
	states []string
}

const testConfig = `
global:
  run_at_start: true
  jitter: 0s
targets:
  - name: alpha
    hosts: [127.0.0.1]
    ports: "22,23,80"
    schedule: "@every 1h"
receivers:
  - name: log
    log: {}
`

func startTestDaemon(t *testing.T, cfgText string) *testDaemon {
	t.Helper()
	dir := t.TempDir()
	td := &testDaemon{
		cfg: filepath.Join(dir, "exposure.yml"), db: filepath.Join(dir, "exposure.db"),
		reg: prometheus.NewRegistry(), net: newFakeNet(), differ: &portDiffer{},
		hup: make(chan os.Signal, 1),
	}
	require.NoError(t, os.WriteFile(td.cfg, []byte(cfgText), 0o600))
	addrs := []string{"127.0.0.1:0"}
	socket, webCfg := false, ""
	td.d = newDaemonState(Options{
		ConfigFile:  td.cfg,
		StoragePath: td.db,
		Web:         &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &socket, WebConfigFile: &webCfg},
		Registry:    td.reg,
		Logger:      discardLogger(),
		Reload:      td.hup,
		Notify: func(s string) error {
			td.mu.Lock()
			td.states = append(td.states, s)
			td.mu.Unlock()
			return nil
		},
		ShutdownTimeout: 10 * time.Second,
	})
	td.stop = runDaemon(t, td.d, func(*config.Config) (scanFunc, differ, error) { return td.net.scan, td.differ, nil })
	td.url = "http://" + td.d.addrs[0]
	return td
}

// runDaemon validates d's options, runs d with scanners (nil: the real
// ones) and waits until it is ready. The function it returns stops d and
// checks that it exited cleanly; it also runs when the test ends, and does
// nothing a second time.
func runDaemon(t *testing.T, d *daemonState, scanners scannerBuilder) func(*testing.T) {
	t.Helper()
	require.NoError(t, d.opts.validate())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.run(ctx, scanners) }()
	select {
	case <-d.readyCh:
	case err := <-done:
		cancel()
		t.Fatalf("daemon exited before ready: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("daemon not ready after 10s")
	}
	stopped := false
	stop := func(t *testing.T) {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Fatal("daemon did not stop")
		}
	}
	t.Cleanup(func() { stop(t) })
	return stop
}

func (td *testDaemon) notified() []string {
	td.mu.Lock()
	defer td.mu.Unlock()
	return append([]string(nil), td.states...)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// waitFor polls cond for up to 10 s: the daemon scans in its own goroutines.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func scans(reg *prometheus.Registry, target, result string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "exposure_scans_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["target"] == target && l["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestDaemonServesMetricsHealthAndStatus(t *testing.T) {
	td := startTestDaemon(t, testConfig)
	td.net.set("alpha", 22)
	// The run at start may already be past the fake scan; run once more to
	// be sure the port is in.
	td.d.runTarget(context.Background(), "alpha")
	waitFor(t, "a successful scan", func() bool { return scans(td.reg, "alpha", resultSuccess) >= 1 })

	code, body := get(t, td.url+"/-/ready")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "Ready.\n", body)
	code, _ = get(t, td.url+"/-/healthy")
	require.Equal(t, http.StatusOK, code)
	code, body = get(t, td.url+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `exposure_port_open{address="127.0.0.1",port="22",protocol="tcp",service="ssh",target="alpha"} 1`)
	require.Contains(t, body, `exposure_service_info{address="127.0.0.1",port="22",product="OpenSSH",protocol="tcp",target="alpha",version="9.2p1"} 1`)
	require.Contains(t, body, `exposure_open_ports{target="alpha"} 1`)
	require.Contains(t, body, `exposure_config_last_reload_successful 1`)
	require.Contains(t, body, `exposure_outbox_pending`)

	code, body = get(t, td.url+"/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `data-target="alpha" data-address="127.0.0.1" data-port="22"`)
	require.Contains(t, body, `<td class="success"`)
	require.NotContains(t, body, "<script")
	code, _ = get(t, td.url+"/nope")
	require.Equal(t, http.StatusNotFound, code)
	code, _ = get(t, td.url+"/-/reload")
	require.Equal(t, http.StatusMethodNotAllowed, code)
	code, _ = get(t, td.url+"/debug/pprof/heap")
	require.Equal(t, http.StatusNotFound, code, "profiles only with --debug.pprof")
	td.d.opts.Pprof = true
	rec := httptest.NewRecorder()
	td.d.routes().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/heap?debug=1", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "heap profile:")
	td.d.opts.Pprof = false

	td.stop(t)
	require.Equal(t, []string{"READY=1", "STOPPING=1"}, td.notified())
}

func TestDaemonPortOpensAndClosesAcrossScans(t *testing.T) {
	td := startTestDaemon(t, testConfig)
	waitFor(t, "the baseline", func() bool { return scans(td.reg, "alpha", resultSuccess) >= 1 })
	td.net.set("alpha", 22, 80)
	td.d.runTarget(context.Background(), "alpha")
	td.net.set("alpha", 22)
	td.d.runTarget(context.Background(), "alpha")

	_, body := get(t, td.url+"/metrics")
	require.Contains(t, body, `exposure_port_open{address="127.0.0.1",port="22"`)
	require.NotContains(t, body, `port="80"`)
	require.Contains(t, body, `exposure_changes_total{kind="port_opened",target="alpha"} 2`)
	require.Contains(t, body, `exposure_changes_total{kind="port_closed",target="alpha"} 1`)
	_, page := get(t, td.url+"/")
	require.Contains(t, page, `<tr class="change kind-port_closed">`)
	waitFor(t, "the log receiver to drain the outbox", func() bool {
		n, err := td.d.store.OutboxLen()
		return err == nil && n == 0
	})
	td.stop(t)

	st, err := store.Open(td.db, store.Options{ReadOnly: true})
	require.NoError(t, err)
	defer st.Close()
	changes, err := st.Changes("alpha", time.Time{}, time.Time{})
	require.NoError(t, err)
	var kinds []string
	for _, c := range changes {
		kinds = append(kinds, fmt.Sprintf("%s:%d", c.Kind, c.Port))
	}
	require.Equal(t, []string{"port_opened:22", "port_opened:80", "port_closed:80"}, kinds)
}

func TestDaemonFailedScanIsStoredIncompleteAndNotDiffed(t *testing.T) {
	td := startTestDaemon(t, testConfig)
	td.net.set("alpha", 22)
	waitFor(t, "the baseline", func() bool { return scans(td.reg, "alpha", resultSuccess) >= 1 })
	td.d.runTarget(context.Background(), "alpha")
	calls := td.differ.count()
	before, err := td.d.store.Changes("alpha", time.Time{}, time.Time{})
	require.NoError(t, err)

	td.net.mu.Lock()
	td.net.fail["alpha"] = errors.New("interface gone\x1b[2J")
	td.net.mu.Unlock()
	out := runScanOf(td, "alpha")
	require.Equal(t, resultFailed, out.Result)
	require.Equal(t, "sweep failed: interface gone [2J", out.Err)
	require.Equal(t, calls, td.differ.count(), "a failed scan is never diffed")
	require.Equal(t, 1.0, scans(td.reg, "alpha", resultFailed))

	_, body := get(t, td.url+"/metrics")
	require.Contains(t, body, `exposure_port_open{address="127.0.0.1",port="22"`, "the last complete scan still counts")
	td.stop(t)

	st, err := store.Open(td.db, store.Options{ReadOnly: true})
	require.NoError(t, err)
	defer st.Close()
	latest, err := st.Latest("alpha")
	require.NoError(t, err)
	require.False(t, latest.Complete)
	require.Equal(t, out.Snapshot, latest.ID)
	changes, err := st.Changes("alpha", time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Equal(t, before, changes, "a failed scan records no change")
}

// runScanOf runs one scan of a target the way the scheduler does and
// returns its outcome.
func runScanOf(td *testDaemon, name string) scanOutcome {
	var out scanOutcome
	rc := td.d.current.Load()
	t := rc.byName[name]
	scan := rc.scan
	deps := jobDeps{
		store: td.d.store, differ: rc.differ, collector: td.d.collector, metrics: td.d.metrics,
		logger: discardLogger(), now: time.Now, wake: td.d.wake,
		scan: func(ctx context.Context, t *config.Target) (*snapshot.Snapshot, error) {
			s, err := scan(ctx, t)
			if err != nil {
				return s, fmt.Errorf("sweep failed: %w", err)
			}
			return s, nil
		},
		record: func(o scanOutcome) { out = o; td.d.status.record(o) },
	}
	runScan(context.Background(), deps, t, rc.cfg.Global, rc.planFor(t, "", time.Now()))
	return out
}

func TestDaemonReload(t *testing.T) {
	td := startTestDaemon(t, testConfig)
	waitFor(t, "the first scan", func() bool { return td.net.count("alpha") >= 1 })

	// Good: beta added with a run at start, alpha kept.
	good := testConfig + `
  - name: beta
    hosts: [127.0.0.2]
    ports: "443"
    schedule: "@every 1h"
`
	good = strings.Replace(good, "receivers:\n  - name: log\n    log: {}\n", "", 1) + "receivers:\n  - name: log\n    log: {}\n"
	require.NoError(t, os.WriteFile(td.cfg, []byte(good), 0o600))
	code, body := post(t, td.url+"/-/reload")
	require.Equal(t, http.StatusOK, code, body)
	waitFor(t, "beta's run at start", func() bool { return td.net.count("beta") >= 1 })
	require.Equal(t, 1.0, testutil.ToFloat64(td.d.metrics.reloadSuccessful))
	require.Equal(t, 2.0, testutil.ToFloat64(td.d.metrics.targets))

	// Bad: the whole file is rejected, nothing changes.
	bad := strings.Replace(good, `ports: "443"`, `ports: "80-70"`, 1)
	require.NoError(t, os.WriteFile(td.cfg, []byte(bad), 0o600))
	code, body = post(t, td.url+"/-/reload")
	require.Equal(t, http.StatusInternalServerError, code)
	require.Contains(t, body, "targets[1].ports")
	require.Contains(t, body, "range end before start")
	require.Equal(t, 0.0, testutil.ToFloat64(td.d.metrics.reloadSuccessful))
	require.Equal(t, 2.0, testutil.ToFloat64(td.d.metrics.targets))
	require.NotNil(t, td.d.current.Load().byName["beta"])

	// SIGHUP with alpha removed: its series vanish.
	only := strings.Replace(good, "  - name: alpha\n    hosts: [127.0.0.1]\n    ports: \"22,23,80\"\n    schedule: \"@every 1h\"\n", "", 1)
	require.NoError(t, os.WriteFile(td.cfg, []byte(only), 0o600))
	td.hup <- os.Interrupt
	waitFor(t, "alpha removed", func() bool { return testutil.ToFloat64(td.d.metrics.targets) == 1 })
	require.Equal(t, 1.0, testutil.ToFloat64(td.d.metrics.reloadSuccessful))
	require.Nil(t, td.d.current.Load().byName["alpha"])
	_, metricsBody := get(t, td.url+"/metrics")
	require.NotContains(t, metricsBody, `target="alpha"`)

	td.stop(t)
	var states []string
	for _, s := range td.notified() {
		if rest, ok := strings.CutPrefix(s, "RELOADING=1\nMONOTONIC_USEC="); ok {
			_, err := strconv.ParseUint(rest, 10, 64)
			require.NoError(t, err, s)
			s = "RELOADING=1"
		}
		states = append(states, s)
	}
	require.Equal(t, []string{"READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1", "STOPPING=1"}, states)
}

func TestDaemonShutdownCommitsRunningScanAsIncomplete(t *testing.T) {
	td := startTestDaemon(t, strings.Replace(testConfig, "run_at_start: true", "run_at_start: false", 1))
	td.net.mu.Lock()
	td.net.block["alpha"] = true
	td.net.mu.Unlock()
	td.d.sched.mu.Lock()
	id := td.d.sched.entries["alpha"].id
	td.d.sched.mu.Unlock()
	go td.d.sched.cron.Entry(id).WrappedJob.Run()
	waitFor(t, "the scan to start", func() bool { return td.net.count("alpha") == 1 })
	td.stop(t)

	st, err := store.Open(td.db, store.Options{ReadOnly: true})
	require.NoError(t, err)
	defer st.Close()
	latest, err := st.Latest("alpha")
	require.NoError(t, err)
	require.False(t, latest.Complete)
	require.Equal(t, 1.0, scans(td.reg, "alpha", resultIncomplete))
}

func TestDaemonRefusesBadConfigAtStart(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("targets: []\nbogus: 1\n"), 0o600))
	addrs := []string{"127.0.0.1:0"}
	socket, webCfg := false, ""
	err := Run(context.Background(), Options{
		ConfigFile: cfg, StoragePath: filepath.Join(dir, "x.db"),
		Web:      &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &socket, WebConfigFile: &webCfg},
		Registry: prometheus.NewRegistry(), Logger: discardLogger(), Notify: func(string) error { return nil },
	})
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	require.Contains(t, err.Error(), "bad.yml:2")
	_, statErr := os.Stat(filepath.Join(dir, "x.db"))
	require.True(t, os.IsNotExist(statErr), "no store is created for a bad config")
}

func TestDefaultStoragePath(t *testing.T) {
	tests := []struct{ env, want string }{
		{"", "data/exposure.db"},
		{"/var/lib/exposure", "/var/lib/exposure/exposure.db"},
		{"/var/lib/exposure:/var/lib/other", "/var/lib/exposure/exposure.db"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, DefaultStoragePath(tt.env))
	}
}

func TestDaemonWebConfigBasicAuth(t *testing.T) {
	dir := t.TempDir()
	webCfg := filepath.Join(dir, "web.yml")
	// dave:dave123, from exporter-toolkit's test data.
	require.NoError(t, os.WriteFile(webCfg, []byte("basic_auth_users:\n  dave: $2y$10$2UXri9cIDdgeKjBo4Rlpx.U3ZLDV8X1IxKmsfOvhcM5oXQt/mLmXq\n"), 0o600))
	cfg := filepath.Join(dir, "exposure.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(testConfig), 0o600))
	addrs := []string{"127.0.0.1:0"}
	socket := false
	d := newDaemonState(Options{
		ConfigFile: cfg, StoragePath: filepath.Join(dir, "x.db"),
		Web:      &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &socket, WebConfigFile: &webCfg},
		Registry: prometheus.NewRegistry(), Logger: discardLogger(), Notify: func(string) error { return nil },
	})
	n := newFakeNet()
	runDaemon(t, d, func(*config.Config) (scanFunc, differ, error) { return n.scan, &portDiffer{}, nil })
	u := "http://" + d.addrs[0] + "/metrics"
	code, _ := get(t, u)
	require.Equal(t, http.StatusUnauthorized, code)
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	req.SetBasicAuth("dave", "dave123")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestDaemonReloadSwapsReceivers(t *testing.T) {
	td := startTestDaemon(t, testConfig)
	two := testConfig + "  - name: audit\n    log: {}\n"
	require.NoError(t, os.WriteFile(td.cfg, []byte(two), 0o600))
	code, body := post(t, td.url+"/-/reload")
	require.Equal(t, http.StatusOK, code, body)
	_, metrics := get(t, td.url+"/metrics")
	require.Contains(t, metrics, `exposure_notifications_total{receiver="audit",result="delivered"} 0`)
	require.Contains(t, metrics, `exposure_notifications_total{receiver="log",result="delivered"}`)
	require.Equal(t, 1, strings.Count(metrics, "# TYPE exposure_outbox_pending gauge"))

	// An alert from a scan after the swap reaches the new receiver.
	td.net.set("alpha", 23) // forbidden_open in portDiffer
	td.d.runTarget(context.Background(), "alpha")
	waitFor(t, "delivery to the audit receiver", func() bool {
		_, m := get(t, td.url+"/metrics")
		return !strings.Contains(m, `exposure_notifications_total{receiver="audit",result="delivered"} 0`)
	})
}

// TestDaemonSeriesBudget: global.series_budget reaches the collector at
// start and again on reload.
func TestDaemonSeriesBudget(t *testing.T) {
	withBudget := func(n int) string {
		return strings.Replace(testConfig, "  jitter: 0s\n", fmt.Sprintf("  jitter: 0s\n  series_budget: %d\n", n), 1)
	}
	td := startTestDaemon(t, withBudget(1))
	td.net.set("alpha", 22, 23, 80)
	openSeries := func() int {
		_, body := get(t, td.url+"/metrics")
		return strings.Count(body, "\nexposure_port_open{")
	}
	// The run at start must be over (committed and published), or it may
	// publish its snapshot, taken before the ports opened, after ours.
	waitFor(t, "the first scan to finish", func() bool { return scans(td.reg, "alpha", resultSuccess) >= 1 })
	runScanOf(td, "alpha")
	require.Equal(t, 1, openSeries())

	require.NoError(t, os.WriteFile(td.cfg, []byte(withBudget(2)), 0o600))
	code, body := post(t, td.url+"/-/reload")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, 2, openSeries())
}

// TestDaemonReloadKeepsNotificationCounts: one long-lived dispatcher, so
// exposure_notifications_total keeps its value across a reload that adds a
// receiver.
func TestDaemonReloadKeepsNotificationCounts(t *testing.T) {
	td := startTestDaemon(t, testConfig)
	waitFor(t, "the first scan", func() bool { return td.net.count("alpha") >= 1 })
	td.net.set("alpha", 23) // forbidden_open in portDiffer
	td.d.runTarget(context.Background(), "alpha")
	const delivered = `exposure_notifications_total{receiver="log",result="delivered"} 1`
	waitFor(t, "delivery to the log receiver", func() bool {
		_, m := get(t, td.url+"/metrics")
		return strings.Contains(m, delivered)
	})
	two := testConfig + "  - name: audit\n    log: {}\n"
	require.NoError(t, os.WriteFile(td.cfg, []byte(two), 0o600))
	code, body := post(t, td.url+"/-/reload")
	require.Equal(t, http.StatusOK, code, body)
	_, metrics := get(t, td.url+"/metrics")
	require.Contains(t, metrics, `exposure_notifications_total{receiver="audit",result="delivered"} 0`)
	require.Contains(t, metrics, delivered)
}

// TestStatusPageShowsReloadAndReceiverHealth: a receiver that keeps
// failing with a queued notification, and a reload that failed, show on
// the status page and count as problems (the page said "0 failing").
func TestStatusPageShowsReloadAndReceiverHealth(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	t.Cleanup(hook.Close)
	cfg := testConfig + "  - name: hook\n    webhook: {url: " + hook.URL + "/x}\n"
	td := startTestDaemon(t, cfg)
	waitFor(t, "the first scan to finish", func() bool { return scans(td.reg, "alpha", resultSuccess) >= 1 })
	row := func(page, id string) string {
		m := regexp.MustCompile(`(?s)<tr[^>]*id="` + id + `">.*?</tr>`).FindString(page)
		require.NotEmpty(t, m, "no row %s on the status page", id)
		return m
	}
	problems := func(page string) string {
		return regexp.MustCompile(`<div id="problems"><b>(\d+)</b>`).FindStringSubmatch(page)[1]
	}
	_, page := get(t, td.url+"/")
	require.Equal(t, "0", problems(page))
	require.Contains(t, row(page, "health-reload"), "loaded")

	td.net.set("alpha", 23) // forbidden_open in portDiffer
	td.d.runTarget(context.Background(), "alpha")
	waitFor(t, "the hook receiver to show as failing", func() bool {
		_, page = get(t, td.url+"/")
		return strings.Contains(row(page, "receiver-hook"), "failing")
	})
	r := row(page, "receiver-hook")
	require.Contains(t, r, "503")
	require.Contains(t, r, `<td class="num">1</td>`, "one notification queued")
	require.Contains(t, row(page, "receiver-log"), `<span class="badge">ok</span>`)
	require.Equal(t, "1", problems(page))

	bad := strings.Replace(cfg, `ports: "22,23,80"`, `ports: "80-22"`, 1)
	require.NoError(t, os.WriteFile(td.cfg, []byte(bad), 0o600))
	code, _ := post(t, td.url+"/-/reload")
	require.Equal(t, http.StatusInternalServerError, code)
	_, page = get(t, td.url+"/")
	r = row(page, "health-reload")
	require.Contains(t, r, "reload failed")
	require.Contains(t, r, "range end before start")
	require.Equal(t, "2", problems(page))
}
