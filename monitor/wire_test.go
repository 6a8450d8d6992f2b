package monitor

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
)

// serveLoopback accepts and closes connections on a 127.0.0.1 listener.
func serveLoopback(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	return ln
}

// TestRealScannersOnLoopback runs the real job (connect engine, diff with
// confirmation by re-probe, store, alert plan) against 127.0.0.1 and checks
// the daemon's metrics on a fresh registry.
func TestRealScannersOnLoopback(t *testing.T) {
	ln := serveLoopback(t, "127.0.0.1:0")
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, portStr, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	port, err := strconv.Atoi(portStr)
	require.NoError(t, err)

	cfg, err := config.Parse("loopback.yml", []byte(fmt.Sprintf(`
global: {jitter: 0s}
targets:
  - name: lo
    hosts: [127.0.0.1]
    ports: "%d"
    engine: connect
    reverse_dns: false
    schedule: "@every 1h"
    service_detection: {enabled: false}
    expect: {never_open: [%d]}
receivers:
  - name: log
    log: {}
`, port, port)))
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	require.NoError(t, err)
	d := &daemonState{logger: discardLogger(), limiter: rate.NewLimiter(1000, 100), metrics: m}
	rc, err := buildRuntime(cfg, d.logger, d.realScanners)
	require.NoError(t, err)
	st, err := store.Open(filepath.Join(t.TempDir(), "x.db"), store.Options{})
	require.NoError(t, err)
	defer st.Close()
	c := newPortCollector(100)
	require.NoError(t, reg.Register(c))

	tgt := rc.byName["lo"]
	var outcomes []scanOutcome
	run := func() scanOutcome {
		deps := jobDeps{store: st, scan: rc.scan, differ: rc.differ, collector: c, metrics: m,
			logger: discardLogger(), now: time.Now, record: func(o scanOutcome) { outcomes = append(outcomes, o) }}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return runScan(ctx, deps, tgt, cfg.Global, rc.planFor(tgt, "", time.Now()))
	}

	base := run()
	require.Equal(t, resultSuccess, base.Result, base.Err)
	require.Zero(t, base.OpenPorts)

	ln = serveLoopback(t, addr)
	opened := run()
	require.Equal(t, resultSuccess, opened.Result, opened.Err)
	require.Equal(t, 1, opened.OpenPorts)
	require.Equal(t, 2, opened.Changes, "port_opened and forbidden_open")

	require.NoError(t, ln.Close())
	closed := run()
	require.Equal(t, resultSuccess, closed.Result, closed.Err)
	require.Equal(t, 1, closed.Changes)

	changes, err := st.Changes("lo", time.Time{}, time.Time{})
	require.NoError(t, err)
	var kinds []string
	for _, ch := range changes {
		kinds = append(kinds, fmt.Sprintf("%s:%d", ch.Kind, ch.Port))
	}
	require.ElementsMatch(t, []string{
		fmt.Sprintf("port_opened:%d", port), fmt.Sprintf("forbidden_open:%d", port), fmt.Sprintf("port_closed:%d", port),
	}, kinds)
	n, err := st.OutboxLen()
	require.NoError(t, err)
	require.Equal(t, 2, n, "one log entry for the opening, one for the closing")

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP exposure_changes_total Changes and policy verdicts committed, by kind.
# TYPE exposure_changes_total counter
exposure_changes_total{kind="forbidden_open",target="lo"} 1
exposure_changes_total{kind="port_closed",target="lo"} 1
exposure_changes_total{kind="port_opened",target="lo"} 1
# HELP exposure_hosts_up Hosts up in the last complete scan of the target.
# TYPE exposure_hosts_up gauge
exposure_hosts_up{target="lo"} 1
# HELP exposure_open_ports Open ports found by the last complete scan of the target.
# TYPE exposure_open_ports gauge
exposure_open_ports{target="lo"} 0
# HELP exposure_probes_sent_total Probes sent by the scan engine.
# TYPE exposure_probes_sent_total counter
exposure_probes_sent_total{target="lo"} 3
# HELP exposure_scans_total Scans by result: success, incomplete (cut short, stored but not diffed), failed.
# TYPE exposure_scans_total counter
exposure_scans_total{result="success",target="lo"} 3
# HELP exposure_series_dropped Per-port series left out of this scrape because global.series_budget was reached.
# TYPE exposure_series_dropped gauge
exposure_series_dropped 0
`), "exposure_changes_total", "exposure_hosts_up", "exposure_open_ports", "exposure_probes_sent_total",
		"exposure_scans_total", "exposure_port_open", "exposure_series_dropped"))
	require.Len(t, outcomes, 3)
}

// TestRunScanCutShort checks scans cut short by their context: stored as
// incomplete, counted, never diffed. A timeout raises scan_failing; a
// cancellation (shutdown, target removed) raises nothing.
func TestRunScanCutShort(t *testing.T) {
	tests := []struct {
		name        string
		ctx         func() (context.Context, context.CancelFunc)
		wantErr     string
		wantFailing bool
	}{
		{"cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, "scan cut short: context canceled", false},
		{"timed out", func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Unix(1, 0))
		}, "scan cut short: context deadline exceeded", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := newMetrics(reg)
			require.NoError(t, err)
			st, err := store.Open(filepath.Join(t.TempDir(), "x.db"), store.Options{})
			require.NoError(t, err)
			defer st.Close()
			differ := &portDiffer{}
			ctx, cancel := tt.ctx()
			defer cancel()
			tgt := &config.Target{Name: "t"}
			deps := jobDeps{
				store: st, differ: differ, collector: newPortCollector(10), metrics: m, logger: discardLogger(), now: time.Now,
				scan: func(ctx context.Context, _ *config.Target) (*snapshot.Snapshot, error) {
					return &snapshot.Snapshot{Complete: true, Hosts: []snapshot.Host{{Address: "127.0.0.1", State: snapshot.HostUp}}}, nil
				},
			}
			out := runScan(ctx, deps, tgt, config.Global{}, planInfo{})
			require.Equal(t, resultIncomplete, out.Result)
			require.Equal(t, tt.wantErr, out.Err)
			require.Zero(t, differ.count())
			latest, err := st.Latest("t")
			require.NoError(t, err)
			require.False(t, latest.Complete)
			raw, err := st.DiffState("t")
			require.NoError(t, err)
			require.Equal(t, tt.wantFailing, strings.Contains(string(raw), `"kind":"scan_failing"`), string(raw))
			require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP exposure_scans_total Scans by result: success, incomplete (cut short, stored but not diffed), failed.
# TYPE exposure_scans_total counter
exposure_scans_total{result="incomplete",target="t"} 1
`), "exposure_scans_total", "exposure_last_scan_success_timestamp_seconds"))
		})
	}
}
