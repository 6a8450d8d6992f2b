package monitor

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/robfig/cron/v3"
	"github.com/stretchr/testify/require"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestScheduler(t *testing.T, maxConcurrent int) (*scheduler, *metrics) {
	t.Helper()
	m, err := newMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	s := newScheduler(time.UTC, maxConcurrent, m, discardLogger())
	return s, m
}

func every(t *testing.T, d time.Duration) cron.Schedule {
	t.Helper()
	return cron.Every(d)
}

func TestSchedulerRunsOnSchedule(t *testing.T) {
	tests := []struct {
		name       string
		period     time.Duration
		wait       time.Duration
		runAtStart bool
		want       int64
	}{
		{"three periods", 10 * time.Minute, 35 * time.Minute, false, 3},
		{"run at start adds one", 10 * time.Minute, 35 * time.Minute, true, 4},
		{"before first period", 10 * time.Minute, 9 * time.Minute, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, _ := newTestScheduler(t, 2)
				var runs atomic.Int64
				s.apply([]scheduleSpec{{
					name: "a", sched: every(t, tt.period), runAtStart: tt.runAtStart, key: "1",
					run: func(context.Context) { runs.Add(1) },
				}}, true)
				s.start()
				time.Sleep(tt.wait)
				synctest.Wait()
				require.Equal(t, tt.want, runs.Load())
				require.NoError(t, s.stop(context.Background()))
			})
		})
	}
}

func TestSchedulerSkipsAndCountsOverlappingRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, m := newTestScheduler(t, 2)
		var runs atomic.Int64
		s.apply([]scheduleSpec{{
			name: "slow", sched: every(t, time.Minute), key: "1",
			run: func(ctx context.Context) {
				runs.Add(1)
				select { // a scan that takes 150 s
				case <-ctx.Done():
				case <-time.After(150 * time.Second):
				}
			},
		}}, true)
		s.start()
		// Runs at 1m (until 3m30), skip at 2m and 3m, run at 4m (until 6m30),
		// skips at 5m and 6m.
		time.Sleep(6*time.Minute + 10*time.Second)
		synctest.Wait()
		require.Equal(t, int64(2), runs.Load())
		require.Equal(t, 4.0, testutil.ToFloat64(m.skipped.WithLabelValues("slow")))
		require.NoError(t, s.stop(context.Background()))
	})
}

func TestSchedulerCapsConcurrentScans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, m := newTestScheduler(t, 2)
		var cur, peak, runs atomic.Int64
		job := func(ctx context.Context) {
			runs.Add(1)
			n := cur.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(time.Minute)
			cur.Add(-1)
		}
		var specs []scheduleSpec
		for _, name := range []string{"a", "b", "c", "d", "e"} {
			specs = append(specs, scheduleSpec{name: name, sched: every(t, time.Hour), key: "1", runAtStart: true, run: job})
		}
		s.apply(specs, true)
		s.start()
		time.Sleep(30 * time.Second)
		synctest.Wait()
		require.Equal(t, 2.0, testutil.ToFloat64(m.running))
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		require.Equal(t, int64(5), runs.Load())
		require.Equal(t, int64(2), peak.Load())
		require.Equal(t, 0.0, testutil.ToFloat64(m.running))
		require.NoError(t, s.stop(context.Background()))
	})
}

func TestSchedulerJitterDelaysRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := newTestScheduler(t, 1)
		s.randN = func(n int64) int64 { return n - 1 } // the longest delay
		var at atomic.Int64
		start := time.Now()
		s.apply([]scheduleSpec{{
			name: "j", sched: every(t, 10*time.Minute), jitter: 30 * time.Second, key: "1",
			run: func(context.Context) { at.Store(int64(time.Since(start))) },
		}}, true)
		s.start()
		time.Sleep(11 * time.Minute)
		synctest.Wait()
		require.Equal(t, int64(10*time.Minute+30*time.Second-1), at.Load())
		require.NoError(t, s.stop(context.Background()))
	})
}

func TestSchedulerTimeoutCancelsScan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := newTestScheduler(t, 1)
		var took atomic.Int64
		s.apply([]scheduleSpec{{
			name: "t", sched: every(t, time.Hour), timeout: 20 * time.Second, key: "1", runAtStart: true,
			run: func(ctx context.Context) {
				start := time.Now()
				<-ctx.Done()
				took.Store(int64(time.Since(start)))
			},
		}}, true)
		s.start()
		time.Sleep(time.Minute)
		synctest.Wait()
		require.Equal(t, int64(20*time.Second), took.Load())
		require.NoError(t, s.stop(context.Background()))
	})
}

func TestSchedulerApply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, m := newTestScheduler(t, 4)
		var aRuns, bRuns, cRuns atomic.Int64
		var aCancelled atomic.Bool
		blockA := func(ctx context.Context) {
			aRuns.Add(1)
			<-ctx.Done()
			aCancelled.Store(true)
		}
		count := func(n *atomic.Int64) jobFunc { return func(context.Context) { n.Add(1) } }
		s.apply([]scheduleSpec{
			{name: "a", sched: every(t, time.Hour), key: "1", runAtStart: true, run: blockA},
			{name: "b", sched: every(t, 10*time.Minute), key: "1", run: count(&bRuns)},
		}, true)
		s.start()
		time.Sleep(15 * time.Minute)
		synctest.Wait()
		require.Equal(t, int64(1), aRuns.Load())
		require.Equal(t, int64(1), bRuns.Load())
		require.Equal(t, 2.0, testutil.ToFloat64(m.targets))

		// a removed: its scan is cancelled. b rescheduled every 2 minutes.
		// c added with a run at start.
		s.apply([]scheduleSpec{
			{name: "b", sched: every(t, 2*time.Minute), key: "2", run: count(&bRuns)},
			{name: "c", sched: every(t, time.Hour), key: "1", runAtStart: true, run: count(&cRuns)},
		}, false)
		synctest.Wait()
		require.True(t, aCancelled.Load())
		require.Equal(t, int64(1), cRuns.Load())
		time.Sleep(10*time.Minute + time.Second)
		synctest.Wait()
		require.Equal(t, int64(6), bRuns.Load())
		require.Equal(t, int64(1), aRuns.Load())
		require.Equal(t, 2.0, testutil.ToFloat64(m.targets))

		// An unchanged key keeps the schedule (no second run at start).
		s.apply([]scheduleSpec{
			{name: "b", sched: every(t, 2*time.Minute), key: "2", run: count(&bRuns)},
			{name: "c", sched: every(t, time.Hour), key: "1", runAtStart: true, run: count(&cRuns)},
		}, false)
		synctest.Wait()
		require.Equal(t, int64(1), cRuns.Load())
		require.NoError(t, s.stop(context.Background()))
	})
}

func TestSchedulerStopCancelsRunningScans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := newTestScheduler(t, 1)
		var finished atomic.Bool
		s.apply([]scheduleSpec{{
			name: "a", sched: every(t, time.Hour), key: "1", runAtStart: true,
			run: func(ctx context.Context) {
				<-ctx.Done()
				time.Sleep(time.Second) // the commit of the incomplete snapshot
				finished.Store(true)
			},
		}}, true)
		s.start()
		synctest.Wait()
		require.True(t, s.alive(time.Second))
		require.NoError(t, s.stop(context.Background()))
		require.True(t, finished.Load())
	})
}

func TestWatchdogPingsWhileSchedulerAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := newTestScheduler(t, 1)
		s.start()
		var mu sync.Mutex
		var states []string
		d := &daemonState{sched: s, logger: discardLogger(), opts: Options{Notify: func(st string) error {
			mu.Lock()
			states = append(states, st)
			mu.Unlock()
			return nil
		}}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			d.watchdog(ctx, 10*time.Second)
			close(done)
		}()
		time.Sleep(31 * time.Second) // pings at 5, 10, ..., 30 s
		synctest.Wait()
		mu.Lock()
		require.Equal(t, []string{"WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"}, states)
		mu.Unlock()

		require.NoError(t, s.stop(context.Background()))
		time.Sleep(30 * time.Second) // a stopped scheduler gets no pings
		synctest.Wait()
		mu.Lock()
		require.Len(t, states, 6)
		mu.Unlock()
		cancel()
		<-done
	})
}

// TestSchedulerInitialisesTargetCounters checks that a scheduled target
// has every change kind, scan result and the skip counter at 0 before its
// first scan, so increase() sees the first change, and that the series go
// when the target is removed.
func TestSchedulerInitialisesTargetCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	require.NoError(t, err)
	s := newScheduler(time.UTC, 1, m, discardLogger())
	s.apply([]scheduleSpec{{name: "dmz", sched: every(t, time.Hour), key: "1", run: func(context.Context) {}}}, true)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP exposure_changes_total Changes and policy verdicts committed, by kind.
# TYPE exposure_changes_total counter
exposure_changes_total{kind="all_ports_open",target="dmz"} 0
exposure_changes_total{kind="cert_changed",target="dmz"} 0
exposure_changes_total{kind="expected_missing",target="dmz"} 0
exposure_changes_total{kind="forbidden_open",target="dmz"} 0
exposure_changes_total{kind="host_down",target="dmz"} 0
exposure_changes_total{kind="host_up",target="dmz"} 0
exposure_changes_total{kind="port_closed",target="dmz"} 0
exposure_changes_total{kind="port_opened",target="dmz"} 0
exposure_changes_total{kind="service_changed",target="dmz"} 0
exposure_changes_total{kind="unexpected_open",target="dmz"} 0
exposure_changes_total{kind="version_changed",target="dmz"} 0
exposure_changes_total{kind="version_policy",target="dmz"} 0
# HELP exposure_scans_skipped_total Scheduled runs skipped because the previous scan of the target was still running.
# TYPE exposure_scans_skipped_total counter
exposure_scans_skipped_total{target="dmz"} 0
# HELP exposure_scans_total Scans by result: success, incomplete (cut short, stored but not diffed), failed.
# TYPE exposure_scans_total counter
exposure_scans_total{result="failed",target="dmz"} 0
exposure_scans_total{result="incomplete",target="dmz"} 0
exposure_scans_total{result="success",target="dmz"} 0
`), "exposure_changes_total", "exposure_scans_total", "exposure_scans_skipped_total"))

	s.apply(nil, false)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(""),
		"exposure_changes_total", "exposure_scans_total", "exposure_scans_skipped_total"))
	require.NoError(t, s.stop(context.Background()))
}
