package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/exposure-monitor/exposure/alert"
	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/internal/textsafe"
	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
)

// scanFunc is everything before the diff: resolve, sweep and service
// detection of one target. It returns a snapshot with Complete false when
// ctx cut it short, and an error (possibly with a partial snapshot) when it
// failed.
type scanFunc func(ctx context.Context, t *config.Target) (*snapshot.Snapshot, error)

// diffResult is what the differ makes of a complete snapshot.
type diffResult struct {
	// Changes are the confirmed changes to store and alert on.
	Changes []snapshot.Change
	// Conditions are the policy verdicts that hold now.
	Conditions []snapshot.Change
	// State is the differ's state to store for the next scan.
	State json.RawMessage
}

// differ compares a complete snapshot with the previous complete one of the
// same target (nil for the baseline) and confirms what changed.
type differ interface {
	diff(ctx context.Context, prev, cur *snapshot.Snapshot, state json.RawMessage, t *config.Target, g config.Global) (diffResult, error)
}

// jobStore is the part of the store a job uses.
type jobStore interface {
	latestStore
	ReleaseCache() error
	DiffState(target string) ([]byte, error)
	Commit(ctx context.Context, c store.Commit) error
}

// targetState is stored as the target's diff state: the differ's own state
// and the alert conditions firing after the last scan, so that both survive
// a restart.
type targetState struct {
	Diff   json.RawMessage   `json:"diff,omitempty"`
	Firing []snapshot.Change `json:"firing,omitempty"`
}

// commitTimeout bounds the commit of a scan whose context was cancelled
// (shutdown, timeout): what was scanned is still written.
const commitTimeout = 30 * time.Second

// scanOutcome is the summary of one run, for metrics, the log line and the
// status page.
type scanOutcome struct {
	Target     string
	Snapshot   string
	Result     string
	Started    time.Time
	Duration   time.Duration
	HostsUp    int
	OpenPorts  int
	Changes    int
	Err        string
	Incomplete bool
}

// jobDeps are what runScan needs; the daemon fills them from the current
// configuration at the start of each run.
type jobDeps struct {
	store     jobStore
	scan      scanFunc
	differ    differ
	collector *portCollector
	metrics   *metrics
	logger    *slog.Logger
	now       func() time.Time
	wake      func()
	record    func(scanOutcome)
	// detections are the service detection times of incremental -sV
	// (nil: every open port is probed).
	detections *svDetections
}

// planInfo is the alerting side of a target's configuration.
type planInfo struct {
	receivers     []alert.Receiver
	validity      time.Duration
	eventLifetime time.Duration
	generatorURL  string
}

// runScan is one job: scan, diff and confirm when complete, plan the
// alerts, and commit snapshot, changes, outbox entries and state in one
// transaction. A failed or cut-short scan is stored as incomplete and never
// diffed, so missing ports are not reported as closed.
func runScan(ctx context.Context, d jobDeps, t *config.Target, g config.Global, pi planInfo) scanOutcome {
	out := runJob(ctx, d, t, g, pi)
	// The job is unreachable here: its previous snapshot, reuse plan,
	// diff state and commit are garbage that releaseMemory can return.
	if out.OpenPorts >= freeAfterPorts {
		releaseMemory(d.store, d.logger)
	}
	return out
}

func runJob(ctx context.Context, d jobDeps, t *config.Target, g config.Global, pi planInfo) scanOutcome {
	j := &scanJob{ctx: ctx, d: d, t: t, g: g, pi: pi}
	j.scan()
	j.loadState()
	j.diff()
	j.judge()
	j.planAlerts()
	j.commit()
	j.publish()
	j.report()
	return j.out
}

// releaseMemory returns what a large scan or load held: the heap's
// garbage (the scan's snapshot, diff state and commit) to the system
// rather than keep the peak until the runtime's scavenger gets to it, and
// the database pages it touched to the page cache (store.ReleaseCache).
func releaseMemory(st interface{ ReleaseCache() error }, logger *slog.Logger) {
	debug.FreeOSMemory()
	if err := st.ReleaseCache(); err != nil {
		logger.Warn("cannot release the database's pages", "err", err)
	}
}

// freeAfterPorts is the size of scan (open ports) after which a job
// returns its memory at once.
const freeAfterPorts = 10000

// scanJob is the state of one runScan, passed from step to step. Any step
// may set err and clear snap.Complete: what follows then treats the scan as
// incomplete (stored, never diffed, scan_failing unless cancelled).
type scanJob struct {
	ctx context.Context
	d   jobDeps
	t   *config.Target
	g   config.Global
	pi  planInfo

	started time.Time
	snap    *snapshot.Snapshot
	err     error
	// reuse is the services copied from the previous complete scan.
	reuse *svReuse
	// prev and prevErr are the previous complete snapshot when scan read
	// it already (prevRead), so diff does not decode it again.
	prev     *snapshot.Snapshot
	prevErr  error
	prevRead bool
	// state is the target's stored state, updated for the next scan.
	state targetState
	dr    diffResult
	// entries are the outbox entries of the alert plan.
	entries []store.OutboxEntry
	// stateBytes is state encoded; nil keeps the stored one.
	stateBytes []byte
	commitErr  error
	out        scanOutcome
}

// scan runs the scanner and completes what it left out of the snapshot:
// target, times, id. A scan that failed or was cut short is incomplete.
func (j *scanJob) scan() {
	name := j.t.Name
	j.started = j.d.now()
	j.out = scanOutcome{Target: name, Started: j.started, Result: resultSuccess}

	if sd := j.t.ServiceDetection; sd.Enabled && j.d.detections != nil {
		j.prev, j.prevErr = j.previous()
		j.prevRead = true
		switch {
		case j.prevErr == nil:
			j.reuse = j.d.detections.plan(name, j.prev, j.started, time.Duration(sd.Refresh))
		case errors.Is(j.prevErr, store.ErrNotFound):
			j.reuse = j.d.detections.plan(name, nil, j.started, time.Duration(sd.Refresh))
		} // else probe everything; diff reports an unreadable store
	}
	snap, err := j.d.scan(withReuse(j.ctx, j.reuse), j.t)
	if snap == nil {
		snap = &snapshot.Snapshot{Hosts: []snapshot.Host{}}
		if err == nil {
			err = errors.New("scanner returned no snapshot")
		}
	}
	snap.Target = name
	if snap.StartedAt.IsZero() {
		snap.StartedAt = j.started
	}
	if snap.ID == "" {
		snap.ID = snapshot.NewID(name, snap.StartedAt)
	}
	if snap.FinishedAt.IsZero() {
		snap.FinishedAt = j.d.now()
	}
	if err != nil || j.ctx.Err() != nil {
		snap.Complete = false
	}
	snap.Sort()
	j.snap, j.err = snap, err
}

// previous is the target's previous complete snapshot: the collector's
// copy when the store says it is still the latest (a re-scan of an estate
// then does not decode its 100,000 ports again), else the store's.
func (j *scanJob) previous() (*snapshot.Snapshot, error) {
	return latestComplete(j.d.store, j.d.collector, j.t.Name)
}

// latestStore is the part of the store latestComplete reads.
type latestStore interface {
	LatestComplete(target string) (*snapshot.Snapshot, error)
	LatestCompleteID(target string) (string, error)
}

// latestComplete is target's latest complete snapshot: c's copy, unpacked,
// while the store names it as the latest (no decoding of an estate's
// ports), else the store's.
func latestComplete(st latestStore, c *portCollector, target string) (*snapshot.Snapshot, error) {
	if p := c.get(target); p != nil {
		if id, err := st.LatestCompleteID(target); err == nil && id == p.Head().ID {
			return p.Unpack(), nil
		}
	}
	return st.LatestComplete(target)
}

// fail records err and marks the scan incomplete.
func (j *scanJob) fail(err error) {
	if j.err != nil {
		err = errors.Join(j.err, err)
	}
	j.err = err
	j.snap.Complete = false
}

// loadState reads the target's stored state. An unreadable one is
// discarded (the differ starts afresh); a store that cannot be read makes
// the scan incomplete, since it cannot be diffed against what it lacks.
func (j *scanJob) loadState() {
	raw, err := j.d.store.DiffState(j.t.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		j.fail(fmt.Errorf("read diff state: %w", err))
	case len(raw) > 0:
		if err := json.Unmarshal(raw, &j.state); err != nil {
			j.d.logger.Warn("discarding unreadable diff state", "target", j.t.Name, "err", err)
			j.state = targetState{}
		}
	}
}

// diff compares a complete scan with the previous complete one (none for
// the baseline) and confirms the changes. Unconfirmed changes must not be
// reported: when diffing fails, the scan is kept as incomplete and the next
// one diffs against the last complete snapshot again.
func (j *scanJob) diff() {
	if !j.snap.Complete {
		return
	}
	prev, err := j.prev, j.prevErr
	if !j.prevRead {
		prev, err = j.previous()
	}
	j.prev = nil // not kept past the diff
	switch {
	case errors.Is(err, store.ErrNotFound):
		prev = nil
	case err != nil:
		j.fail(fmt.Errorf("read previous snapshot: %w", err))
		return
	}
	dr, err := j.d.differ.diff(j.ctx, prev, j.snap, j.state.Diff, j.t, j.g)
	if err != nil {
		j.fail(err)
		return
	}
	j.dr = dr
}

// judge sets the result and the error text of the outcome: failed when the
// scan failed on its own, incomplete when it was cut short.
func (j *scanJob) judge() {
	switch {
	case j.err != nil && j.ctx.Err() == nil:
		j.out.Result = resultFailed
	case !j.snap.Complete:
		j.out.Result = resultIncomplete
	}
	switch {
	case j.err != nil:
		j.out.Err = cleanError(j.err)
	case !j.snap.Complete:
		j.out.Err = "scan cut short"
		if j.ctx.Err() != nil {
			j.out.Err = "scan cut short: " + j.ctx.Err().Error()
		}
	}
}

// conditions are the alert conditions that hold after this scan: the
// policy verdicts of a complete scan, scan_failing for one that failed or
// timed out, none for a cancelled one.
func (j *scanJob) conditions() []snapshot.Change {
	switch {
	case j.snap.Complete:
		return j.dr.Conditions
	case errors.Is(j.ctx.Err(), context.Canceled):
		// Shutdown or removal of the target, not a failing scan: keep
		// whatever was firing (Plan resolves nothing for an incomplete
		// scan) and raise nothing new.
		return nil
	default:
		return []snapshot.Change{{
			Kind: snapshot.ScanFailing, Target: j.t.Name, At: j.snap.FinishedAt,
			Snapshot: j.snap.ID, Detail: j.out.Err,
		}}
	}
}

// planAlerts turns changes and conditions into outbox entries and the
// state to store: the differ's new state (complete scans only) and what
// fires now.
func (j *scanJob) planAlerts() {
	plan := alert.Plan(alert.PlanInput{
		Target:        j.t.Name,
		Labels:        j.t.Labels,
		SnapshotID:    j.snap.ID,
		Now:           j.snap.FinishedAt,
		Complete:      j.snap.Complete,
		Snapshot:      j.snap,
		Changes:       j.dr.Changes,
		Conditions:    j.conditions(),
		Previous:      j.state.Firing,
		Validity:      j.pi.validity,
		EventLifetime: j.pi.eventLifetime,
		GeneratorURL:  j.pi.generatorURL,
		Receivers:     j.pi.receivers,
	})
	if j.snap.Complete {
		j.state.Diff = j.dr.State
	}
	j.state.Firing = plan.Firing
	if b, err := json.Marshal(j.state); err == nil {
		j.stateBytes = b
	} // else keep the stored state rather than lose it
	j.entries = make([]store.OutboxEntry, 0, len(plan.Entries))
	for _, e := range plan.Entries {
		j.entries = append(j.entries, store.OutboxEntry(e))
	}
}

// commit writes snapshot, changes, outbox entries and state in one
// transaction, even when the scan's context was cancelled (bounded by
// commitTimeout): what was scanned is kept.
func (j *scanJob) commit() {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(j.ctx), commitTimeout)
	defer cancel()
	j.commitErr = j.d.store.Commit(cctx, store.Commit{
		Snapshot:  j.snap,
		Changes:   j.dr.Changes,
		Outbox:    j.entries,
		DiffState: j.stateBytes,
	})
}

// publish completes the outcome and, once committed, shows the scan: the
// port collector, the change counters and latest-scan gauges, and a wake
// of the dispatcher for new outbox entries.
func (j *scanJob) publish() {
	out := &j.out
	out.Snapshot = j.snap.ID
	out.Duration = j.d.now().Sub(j.started)
	out.HostsUp = j.snap.HostsUp()
	out.OpenPorts = j.snap.OpenPorts()
	out.Incomplete = !j.snap.Complete
	if j.commitErr != nil {
		out.Result = resultFailed
		out.Err = cleanError(fmt.Errorf("commit: %w", j.commitErr))
		j.d.detections.restore(j.reuse)
		return
	}
	out.Changes = len(j.dr.Changes)
	if j.snap.Complete && j.t.ServiceDetection.Enabled && j.d.detections != nil {
		// Only now is snap the previous complete scan of the next job.
		kept, full := j.d.detections.record(j.t.Name, j.snap, j.reuse, j.started)
		j.d.metrics.svDetections.WithLabelValues(j.t.Name, svKept).Add(float64(kept))
		j.d.metrics.svDetections.WithLabelValues(j.t.Name, svFull).Add(float64(full))
	} else {
		j.d.detections.restore(j.reuse)
	}
	j.d.collector.set(j.snap)
	for _, c := range j.dr.Changes {
		j.d.metrics.changes.WithLabelValues(j.t.Name, string(c.Kind)).Inc()
	}
	if j.snap.Complete {
		j.d.metrics.setLatest(j.snap)
	}
	if len(j.entries) > 0 && j.d.wake != nil {
		j.d.wake()
	}
}

// report hands the outcome to the status page, counts the scan and logs
// its one line.
func (j *scanJob) report() {
	out, name, m := j.out, j.t.Name, j.d.metrics
	if j.d.record != nil {
		j.d.record(out)
	}
	m.scans.WithLabelValues(name, out.Result).Inc()
	m.scanDuration.WithLabelValues(name).Observe(out.Duration.Seconds())
	m.probesSent.WithLabelValues(name).Add(float64(j.snap.Quality.ProbesSent))
	m.retransmits.WithLabelValues(name).Add(float64(j.snap.Quality.Retransmits))

	attrs := []any{
		"target", name, "result", out.Result, "duration", out.Duration.Round(time.Millisecond),
		"hosts_up", out.HostsUp, "open_ports", out.OpenPorts, "changes", out.Changes,
		"snapshot", out.Snapshot,
	}
	if out.Err != "" {
		attrs = append(attrs, "err", out.Err)
	}
	level := slog.LevelInfo
	switch out.Result {
	case resultFailed:
		level = slog.LevelError
	case resultIncomplete:
		level = slog.LevelWarn
	}
	j.d.logger.Log(context.WithoutCancel(j.ctx), level, "scan finished", attrs...)
}

// maxErrLen bounds error texts that reach logs, alerts and the status page:
// scanner errors can quote what a remote host sent.
const maxErrLen = 300

func cleanError(err error) string { return textsafe.Clean(err.Error(), maxErrLen) }
