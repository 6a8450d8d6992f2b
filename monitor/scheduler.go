package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
)

// jobFunc runs one scan of one target. ctx carries the target's scan
// timeout and is cancelled when the target is removed or the daemon stops.
type jobFunc func(ctx context.Context)

// scheduleSpec is what the scheduler needs to know about one target.
type scheduleSpec struct {
	name       string
	sched      cron.Schedule
	timeout    time.Duration
	jitter     time.Duration
	runAtStart bool
	// key changes whenever anything about the target changes; a reload
	// reschedules a target whose key differs.
	key string
	run jobFunc
}

type entry struct {
	spec   scheduleSpec
	id     cron.EntryID
	cancel context.CancelFunc
	// removed is set when the target left the configuration; a scan still
	// finishing then drops the series it just updated.
	removed atomic.Bool
}

// scheduler runs scheduleSpecs on their cron schedules, at most one scan
// per target at a time and at most max scans at once.
type scheduler struct {
	cron    *cron.Cron
	logger  *slog.Logger
	metrics *metrics
	randN   func(n int64) int64

	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	stopped bool
	sem     chan struct{}
	entries map[string]*entry
	// locks outlive entries: a rescheduled target must not start a second
	// scan while the one begun under the old schedule is still running.
	locks map[string]*sync.Mutex
}

func newScheduler(loc *time.Location, maxConcurrent int, m *metrics, logger *slog.Logger) *scheduler {
	if loc == nil {
		loc = time.Local
	}
	if maxConcurrent < 1 {
		maxConcurrent = 1
	}
	l := cronLogger{logger}
	base, cancel := context.WithCancel(context.Background())
	return &scheduler{
		cron: cron.New(
			cron.WithLocation(loc),
			cron.WithLogger(l),
			cron.WithChain(cron.Recover(l)),
		),
		logger:  logger,
		metrics: m,
		randN:   rand.Int64N,
		base:    base,
		cancel:  cancel,
		sem:     make(chan struct{}, maxConcurrent),
		entries: map[string]*entry{},
		locks:   map[string]*sync.Mutex{},
	}
}

// start starts the cron loop and the runs at start of the current entries.
func (s *scheduler) start() {
	s.cron.Start()
}

// setMaxConcurrent replaces the concurrency limit. Scans holding a slot of
// the old limit release it there; new scans queue on the new one.
func (s *scheduler) setMaxConcurrent(n int) {
	if n < 1 {
		n = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cap(s.sem) != n {
		s.sem = make(chan struct{}, n)
	}
}

// apply makes the scheduled targets exactly specs: removed targets stop
// (their running scan is cancelled), added ones start, and targets whose
// key changed are rescheduled.
func (s *scheduler) apply(specs []scheduleSpec, initial bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	want := make(map[string]scheduleSpec, len(specs))
	for _, sp := range specs {
		want[sp.name] = sp
	}
	for name, e := range s.entries {
		sp, ok := want[name]
		if ok && sp.key == e.spec.key {
			continue
		}
		s.cron.Remove(e.id)
		delete(s.entries, name)
		if !ok {
			// A removed target stops now; a changed one finishes the scan
			// it began under the old configuration.
			e.removed.Store(true)
			e.cancel()
			delete(s.locks, name)
			s.metrics.forget(name)
			s.logger.Info("target removed", "target", name)
		} else {
			s.logger.Info("target rescheduled", "target", name)
		}
	}
	for _, sp := range specs {
		if _, ok := s.entries[sp.name]; ok {
			continue
		}
		lock, existed := s.locks[sp.name]
		if !existed {
			lock = &sync.Mutex{}
			s.locks[sp.name] = lock
		}
		ctx, cancel := context.WithCancel(s.base)
		e := &entry{spec: sp, cancel: cancel}
		job := cron.NewChain(
			cron.Recover(cronLogger{s.logger}),
			cron.SkipIfStillRunning(skipLogger{s, sp.name}),
		).Then(cron.FuncJob(func() { s.runOnce(ctx, e, lock) }))
		e.id = s.cron.Schedule(sp.sched, job)
		s.entries[sp.name] = e
		s.metrics.init(sp.name)
		if !existed && !initial {
			s.logger.Info("target added", "target", sp.name)
		}
		if !existed && sp.runAtStart {
			go job.Run()
		}
	}
	s.metrics.targets.Set(float64(len(s.entries)))
}

// runOnce is one scheduled run: skip if the target is still being scanned,
// wait out the jitter, take a concurrency slot, then scan under the
// target's timeout.
func (s *scheduler) runOnce(ctx context.Context, e *entry, lock *sync.Mutex) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	if !lock.TryLock() {
		s.skip(e.spec.name)
		return
	}
	defer lock.Unlock()

	if e.spec.jitter > 0 {
		d := time.Duration(s.randN(int64(e.spec.jitter)))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	s.mu.Lock()
	sem := s.sem
	s.mu.Unlock()
	select {
	case <-ctx.Done():
		return
	case sem <- struct{}{}:
	}
	s.metrics.running.Inc()
	defer func() {
		s.metrics.running.Dec()
		<-sem
	}()
	if e.spec.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.spec.timeout)
		defer cancel()
	}
	e.spec.run(ctx)
	if e.removed.Load() {
		s.metrics.forget(e.spec.name)
	}
}

func (s *scheduler) skip(target string) {
	s.metrics.skipped.WithLabelValues(target).Inc()
	s.logger.Warn("scan skipped: previous scan of the target still running", "target", target)
}

// next returns the next scheduled run of a target, zero if unknown.
func (s *scheduler) next(target string) time.Time {
	s.mu.Lock()
	e, ok := s.entries[target]
	s.mu.Unlock()
	if !ok {
		return time.Time{}
	}
	return s.cron.Entry(e.id).Next
}

// alive reports whether the cron loop answers within d. The watchdog pings
// systemd only while it does.
func (s *scheduler) alive(d time.Duration) bool {
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return false
	}
	done := make(chan struct{})
	go func() {
		s.cron.Entries() // served by the cron loop while it runs
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// stop stops scheduling, cancels running scans and waits until they have
// returned (they commit what they have as incomplete) or ctx is done.
func (s *scheduler) stop(ctx context.Context) error {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.cron.Stop()
	s.cancel()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for running scans: %w", ctx.Err())
	}
}

// cronLogger adapts slog to cron.Logger.
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debug("cron: "+msg, cronArgs(kv)...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("cron: "+msg, append(cronArgs(kv), "err", err)...)
}

func cronArgs(kv []any) []any {
	out := make([]any, 0, len(kv))
	for i := 0; i+1 < len(kv); i += 2 {
		k, ok := kv[i].(string)
		if !ok {
			k = fmt.Sprint(kv[i])
		}
		out = append(out, k, kv[i+1])
	}
	return out
}

// skipLogger is the logger of one target's cron.SkipIfStillRunning, whose
// only message is "skip": it turns that message into the skipped-runs metric.
type skipLogger struct {
	s      *scheduler
	target string
}

func (l skipLogger) Info(msg string, _ ...any) {
	if msg == "skip" {
		l.s.skip(l.target)
	}
}
func (l skipLogger) Error(err error, msg string, kv ...any) {
	cronLogger{l.s.logger}.Error(err, msg, kv...)
}
