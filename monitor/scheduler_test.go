package monitor

import (
	"context"
	"fmt"
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

	"github.com/exposure-monitor/exposure/config"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestScheduler(t *testing.T, maxConcurrent int) (*scheduler, *metrics) {
	t.Helper()
	m, err := newMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	s := newScheduler(time.UTC, maxConcurrent, m, discardLogger())
	// Inside a synctest bubble the cleanup runs in the bubble: a failed
	// check still stops the cron loop, so the bubble can end.
	t.Cleanup(func() { _ = s.stop(context.Background()) })
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

// TestSchedulerOffsetKeepsPeriod checks that a target runs its fixed
// offset after each activation of its schedule, @every and cron alike, so
// the gap between runs is the schedule's.
func TestSchedulerOffsetKeepsPeriod(t *testing.T) {
	cronSpec, err := config.ParseSchedule("*/10 * * * *")
	require.NoError(t, err)
	offset := spreadOffset("j", 10*time.Minute, 30*time.Second)
	require.NotZero(t, offset)
	for _, tt := range []struct {
		name  string
		sched cron.Schedule
		// first is the first run; the next follow every 10 minutes.
		first time.Duration
	}{
		// @every counts from when the target is scheduled.
		{"@every", every(t, 10*time.Minute), 10*time.Minute + offset},
		// The cron grid is the clock's: 00:00 + offset is still ahead.
		{"cron", cronSpec, offset},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, _ := newTestScheduler(t, 1)
				start := time.Now() // synctest's clock starts at midnight UTC
				var mu sync.Mutex
				var at []time.Duration
				s.apply([]scheduleSpec{{
					name: "j", sched: tt.sched, jitter: 30 * time.Second, key: "1",
					run: func(context.Context) {
						mu.Lock()
						at = append(at, time.Since(start))
						mu.Unlock()
					},
				}}, true)
				s.start()
				time.Sleep(31 * time.Minute)
				synctest.Wait()
				mu.Lock()
				want := []time.Duration{tt.first, tt.first + 10*time.Minute, tt.first + 20*time.Minute}
				if tt.first+30*time.Minute <= 31*time.Minute {
					want = append(want, tt.first+30*time.Minute)
				}
				require.Equal(t, want, at)
				mu.Unlock()
				require.Equal(t, start.Add(want[len(want)-1]+10*time.Minute).UTC(), s.next("j").UTC())
				require.NoError(t, s.stop(context.Background()))
			})
		})
	}
}

// TestSchedulerEveryFewSecondsWithDefaultJitter is the schedule a user
// tries first: "@every 3s" under the default global.jitter (30s). Each
// target keeps its period, and no run is skipped while nothing runs.
func TestSchedulerEveryFewSecondsWithDefaultJitter(t *testing.T) {
	cfg, err := config.Parse("every.yml", []byte("targets:\n  - name: web\n    hosts: [127.0.0.1]\n    schedule: \"@every 3s\"\n"))
	require.NoError(t, err)
	require.Equal(t, config.DefaultJitter, cfg.Global.Jitter, "the default applies")
	synctest.Test(t, func(t *testing.T) {
		m, err := newMetrics(prometheus.NewRegistry())
		require.NoError(t, err)
		var logs strings.Builder
		var logMu sync.Mutex
		logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
		s := newScheduler(time.UTC, cfg.Global.MaxConcurrentScans, m, logger)
		t.Cleanup(func() { _ = s.stop(context.Background()) })
		var runs atomic.Int64
		s.apply([]scheduleSpec{targetSpec(cfg.Targets[0], cfg.Global, func(context.Context) {
			runs.Add(1)
			time.Sleep(time.Second) // a scan of a second
		})}, true)
		s.start()
		time.Sleep(40 * time.Second)
		synctest.Wait()
		require.GreaterOrEqual(t, runs.Load(), int64(10))
		require.Zero(t, testutil.ToFloat64(m.skipped.WithLabelValues("web")))
		logMu.Lock()
		require.NotContains(t, logs.String(), "skipped")
		logMu.Unlock()
		require.NoError(t, s.stop(context.Background()))
	})
}

// A run that finds the previous one queued for a scan slot is skipped and
// counted, and the log says it waits rather than scans.
func TestSchedulerSkipNamesWhatThePreviousRunDoes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, err := newMetrics(prometheus.NewRegistry())
		require.NoError(t, err)
		var logs strings.Builder
		var logMu sync.Mutex
		s := newScheduler(time.UTC, 1, m, slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil)))
		t.Cleanup(func() { _ = s.stop(context.Background()) })
		s.apply([]scheduleSpec{
			{name: "hog", sched: every(t, time.Hour), key: "1", runAtStart: true, run: func(ctx context.Context) { <-ctx.Done() }},
			{name: "queued", sched: every(t, time.Minute), key: "1", run: func(context.Context) {}},
		}, true)
		s.start()
		time.Sleep(2*time.Minute + time.Second)
		synctest.Wait()
		require.Equal(t, 1.0, testutil.ToFloat64(m.skipped.WithLabelValues("queued")))
		logMu.Lock()
		require.Contains(t, logs.String(), `msg="scan skipped: previous run of the target still waiting for a scan slot (global.max_concurrent_scans)" target=queued`)
		require.NotContains(t, logs.String(), "still running")
		logMu.Unlock()
		require.NoError(t, s.stop(context.Background()))
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestSpreadOffset(t *testing.T) {
	intervals := []time.Duration{time.Second, 3 * time.Second, time.Minute, 15 * time.Minute, 24 * time.Hour}
	for _, interval := range intervals {
		for _, jitter := range []time.Duration{0, time.Second, 30 * time.Second, time.Hour} {
			bound := min(jitter, time.Duration(float64(interval)*maxOffsetShare))
			seen := map[time.Duration]bool{}
			for i := range 200 {
				name := fmt.Sprintf("target-%d", i)
				off := spreadOffset(name, interval, jitter)
				require.Equal(t, off, spreadOffset(name, interval, jitter), "stable for %s", name)
				require.GreaterOrEqual(t, off, time.Duration(0))
				if bound == 0 {
					require.Zero(t, off)
					continue
				}
				require.Less(t, off, bound, "%s interval %s jitter %s", name, interval, jitter)
				seen[off] = true
			}
			if bound > 0 {
				require.Greater(t, len(seen), 150, "names spread over [0, %s)", bound)
			}
		}
	}
}

// TestSpreadOffsetEven checks that 1,000 targets on one schedule, with a
// jitter as long as the interval, spread over the whole period: no tenth
// of it gets more than one and a half times its share, and each but the
// last (which the offsets' bound cuts) at least half of it.
func TestSpreadOffsetEven(t *testing.T) {
	const targets, buckets = 1000, 10
	interval := 5 * time.Minute
	var got [buckets]int
	for i := range targets {
		off := spreadOffset(fmt.Sprintf("t%04d", i), interval, interval)
		got[int(off*buckets/interval)]++
	}
	share := targets / buckets
	for b, n := range got {
		require.LessOrEqual(t, n, share*3/2, "tenth %d of the period: %v", b, got)
		if b < buckets-1 {
			require.GreaterOrEqual(t, n, share/2, "tenth %d of the period: %v", b, got)
		}
	}
}

func TestScheduleInterval(t *testing.T) {
	from := time.Date(2026, 11, 25, 6, 7, 0, 0, time.UTC)
	for spec, want := range map[string]time.Duration{
		"@every 3s":                         3 * time.Second,
		"*/30 * * * *":                      30 * time.Minute,
		"0,5 * * * *":                       5 * time.Minute,
		"@daily":                            24 * time.Hour,
		"0 9 * * 1-5":                       24 * time.Hour,
		"CRON_TZ=Europe/Berlin 0 */6 * * *": 6 * time.Hour,
	} {
		sched, err := config.ParseSchedule(spec)
		require.NoError(t, err, spec)
		require.Equal(t, want, scheduleInterval(sched, from), spec)
	}
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
