package monitor

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/exposure-monitor/exposure/config"
)

// jobFunc runs one scan of one target. ctx carries the target's scan
// timeout and is cancelled when the target is removed or the daemon stops.
type jobFunc func(ctx context.Context)

// scheduleSpec is what the scheduler needs to know about one target.
type scheduleSpec struct {
	name    string
	sched   cron.Schedule
	timeout time.Duration
	// jitter bounds the target's fixed offset (spreadOffset).
	jitter     time.Duration
	runAtStart bool
	// key changes whenever anything about the target changes; a reload
	// reschedules a target whose key differs.
	key string
	run jobFunc
}

// targetSpec is the schedule of target t under global settings g.
func targetSpec(t *config.Target, g config.Global, run jobFunc) scheduleSpec {
	return scheduleSpec{
		name:       t.Name,
		sched:      t.Sched,
		timeout:    time.Duration(t.Timeout),
		jitter:     time.Duration(g.Jitter),
		runAtStart: g.RunAtStart,
		key:        scheduleKey(t, g),
		run:        run,
	}
}

type entry struct {
	spec   scheduleSpec
	id     cron.EntryID
	cancel context.CancelFunc
	// atStart is the run at start, delayed by the target's offset; stopped
	// when the target is removed.
	atStart *time.Timer
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

	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	stopped bool
	sem     chan struct{}
	entries map[string]*entry
	// locks outlive entries: a rescheduled target must not start a second
	// scan while the one begun under the old schedule is still running.
	locks map[string]*targetLock
	// gc switches the collector's target as scans start and end (nil:
	// never).
	gc *gcTuner
}

// targetLock is held by the one run of a target in progress, from the
// moment it queues for a scan slot until its scan returns.
type targetLock struct {
	sync.Mutex
	// scanning is set once the run holds a scan slot.
	scanning atomic.Bool
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
		base:    base,
		cancel:  cancel,
		sem:     make(chan struct{}, maxConcurrent),
		entries: map[string]*entry{},
		locks:   map[string]*targetLock{},
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
			// it began under the old configuration (and keeps a pending run
			// at start).
			e.removed.Store(true)
			e.cancel()
			if e.atStart != nil {
				e.atStart.Stop()
			}
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
			lock = &targetLock{}
			s.locks[sp.name] = lock
		}
		ctx, cancel := context.WithCancel(s.base)
		e := &entry{spec: sp, cancel: cancel}
		job := cron.NewChain(
			cron.Recover(cronLogger{s.logger}),
			cron.SkipIfStillRunning(skipLogger{s, sp.name}),
		).Then(cron.FuncJob(func() { s.runOnce(ctx, e, lock) }))
		now := time.Now()
		interval := scheduleInterval(sp.sched, now)
		offset := spreadOffset(sp.name, interval, sp.jitter)
		e.id = s.cron.Schedule(offsetSchedule{anchored(sp.sched, now), offset}, job)
		s.entries[sp.name] = e
		s.metrics.init(sp.name)
		if !existed && !initial {
			s.logger.Info("target added", "target", sp.name)
		}
		s.logger.Debug("target scheduled", "target", sp.name, "interval", interval, "offset", offset)
		if !existed && sp.runAtStart {
			e.atStart = time.AfterFunc(offset, job.Run)
		}
	}
	s.metrics.targets.Set(float64(len(s.entries)))
}

// runOnce is one scheduled run: skip if the target's previous run is
// still in progress, take a concurrency slot, then scan under the target's
// timeout. The spread of runs is in the schedule (offsetSchedule), so a run
// never waits holding the target's lock except for a slot.
func (s *scheduler) runOnce(ctx context.Context, e *entry, lock *targetLock) {
	s.mu.Lock()
	if s.stopped || ctx.Err() != nil {
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

	s.mu.Lock()
	sem := s.sem
	s.mu.Unlock()
	select {
	case <-ctx.Done():
		return
	case sem <- struct{}{}:
	}
	if ctx.Err() != nil { // select picks at random when both are ready
		<-sem
		return
	}
	lock.scanning.Store(true)
	s.metrics.running.Inc()
	s.gc.scanStarted()
	defer func() {
		s.gc.scanEnded()
		s.metrics.running.Dec()
		lock.scanning.Store(false)
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

// skip counts a run that found the target's previous run in progress and
// says what that run is doing: scanning, or queued for a slot of
// global.max_concurrent_scans.
func (s *scheduler) skip(target string) {
	s.metrics.skipped.WithLabelValues(target).Inc()
	s.mu.Lock()
	lock := s.locks[target]
	s.mu.Unlock()
	if lock != nil && !lock.scanning.Load() {
		s.logger.Warn("scan skipped: previous run of the target still waiting for a scan slot (global.max_concurrent_scans)", "target", target)
		return
	}
	s.logger.Warn("scan skipped: previous scan of the target still running", "target", target)
}

// maxOffsetShare bounds a target's offset to this share of its interval.
// Near 1, so that with a jitter as long as the interval the runs of many
// targets on one schedule spread over the whole period: with half (the
// bound before), bench/targets-1000.sh saw every run in the first half of
// each period, 2.3 times the mean rate in its busiest 10 s and none in the
// second half. Below 1, so a target's runs keep their order and period.
const maxOffsetShare = 0.95

// spreadOffset is the fixed delay of a target's runs after its schedule's
// activations, as Prometheus spreads scrapes: the FNV-1a hash of the name
// scaled into [0, min(jitter, interval*maxOffsetShare)). It is the same on
// every run, reload and restart, so each target keeps its period while
// targets on one schedule start apart.
func spreadOffset(name string, interval, jitter time.Duration) time.Duration {
	bound := min(jitter, time.Duration(float64(interval)*maxOffsetShare))
	if bound <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	return time.Duration(h.Sum64() % uint64(bound))
}

// intervalSamples is how many gaps between activations scheduleInterval
// looks at.
const intervalSamples = 16

// scheduleInterval is the period of sched: the delay of @every, else the
// shortest gap between its next activations after from (a schedule such as
// "0,5 * * * *" has gaps of 5 and 55 minutes). Zero if it never fires.
func scheduleInterval(sched cron.Schedule, from time.Time) time.Duration {
	switch sc := sched.(type) {
	case cron.ConstantDelaySchedule:
		return sc.Delay
	case everySchedule:
		return sc.every
	}
	var shortest time.Duration
	prev := sched.Next(from)
	for range intervalSamples {
		if prev.IsZero() {
			break
		}
		next := sched.Next(prev)
		if next.IsZero() {
			break
		}
		if gap := next.Sub(prev); shortest == 0 || gap < shortest {
			shortest = gap
		}
		prev = next
	}
	return shortest
}

// offsetSchedule fires offset after each activation of inner.
type offsetSchedule struct {
	inner  cron.Schedule
	offset time.Duration
}

func (o offsetSchedule) Next(t time.Time) time.Time {
	n := o.inner.Next(t.Add(-o.offset))
	if n.IsZero() {
		return n
	}
	return n.Add(o.offset)
}

// everySchedule is "@every" on a fixed grid: anchor + k*every, k >= 1.
// cron.ConstantDelaySchedule counts from whenever it is asked, so an offset
// added to its activations would vanish at the next one.
type everySchedule struct {
	anchor time.Time
	every  time.Duration
}

func (e everySchedule) Next(t time.Time) time.Time {
	if t.Before(e.anchor) {
		return e.anchor.Add(e.every)
	}
	k := t.Sub(e.anchor)/e.every + 1
	return e.anchor.Add(k * e.every)
}

// anchored turns an @every schedule into one on a grid from now; other
// schedules already are on the clock's grid.
func anchored(sched cron.Schedule, now time.Time) cron.Schedule {
	if sc, ok := sched.(cron.ConstantDelaySchedule); ok && sc.Delay > 0 {
		return everySchedule{anchor: now, every: sc.Delay}
	}
	return sched
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
