package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	LatestComplete(target string) (*snapshot.Snapshot, error)
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
	name := t.Name
	started := d.now()
	out := scanOutcome{Target: name, Started: started, Result: resultSuccess}

	snap, scanErr := d.scan(ctx, t)
	if snap == nil {
		snap = &snapshot.Snapshot{Hosts: []snapshot.Host{}}
		if scanErr == nil {
			scanErr = errors.New("scanner returned no snapshot")
		}
	}
	snap.Target = name
	if snap.StartedAt.IsZero() {
		snap.StartedAt = started
	}
	if snap.ID == "" {
		snap.ID = snapshot.NewID(name, snap.StartedAt)
	}
	if snap.FinishedAt.IsZero() {
		snap.FinishedAt = d.now()
	}
	if scanErr != nil || ctx.Err() != nil {
		snap.Complete = false
	}
	snap.Sort()

	var st targetState
	if raw, err := d.store.DiffState(name); err == nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, &st); err != nil {
			d.logger.Warn("discarding unreadable diff state", "target", name, "err", err)
			st = targetState{}
		}
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		scanErr = errors.Join(scanErr, fmt.Errorf("read diff state: %w", err))
		snap.Complete = false
	}

	var dr diffResult
	if snap.Complete {
		prev, err := d.store.LatestComplete(name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			prev = nil
		case err != nil:
			scanErr = fmt.Errorf("read previous snapshot: %w", err)
			snap.Complete = false
		}
		if snap.Complete {
			dr, err = d.differ.diff(ctx, prev, snap, st.Diff, t, g)
			if err != nil {
				// Unconfirmed changes must not be reported; the scan is kept
				// as incomplete and the next one diffs against the last
				// complete snapshot again.
				scanErr = err
				snap.Complete = false
				dr = diffResult{}
			}
		}
	}

	switch {
	case scanErr != nil && ctx.Err() == nil:
		out.Result = resultFailed
	case !snap.Complete:
		out.Result = resultIncomplete
	}
	if scanErr != nil {
		out.Err = cleanError(scanErr)
	} else if !snap.Complete {
		out.Err = "scan cut short"
		if ctx.Err() != nil {
			out.Err = "scan cut short: " + ctx.Err().Error()
		}
	}

	conditions := dr.Conditions
	switch {
	case snap.Complete:
	case errors.Is(ctx.Err(), context.Canceled):
		// Shutdown or removal of the target, not a failing scan: keep
		// whatever was firing (Plan resolves nothing for an incomplete
		// scan) and raise nothing new.
		conditions = nil
	default:
		conditions = []snapshot.Change{{
			Kind: alert.ScanFailing, Target: name, At: snap.FinishedAt,
			Snapshot: snap.ID, Detail: out.Err,
		}}
	}
	plan := alert.Plan(alert.PlanInput{
		Target:        name,
		Labels:        t.Labels,
		SnapshotID:    snap.ID,
		Now:           snap.FinishedAt,
		Complete:      snap.Complete,
		Snapshot:      snap,
		Changes:       dr.Changes,
		Conditions:    conditions,
		Previous:      st.Firing,
		Validity:      pi.validity,
		EventLifetime: pi.eventLifetime,
		GeneratorURL:  pi.generatorURL,
		Receivers:     pi.receivers,
	})
	if snap.Complete {
		st.Diff = dr.State
	}
	st.Firing = plan.Firing
	stateBytes, err := json.Marshal(st)
	if err != nil {
		stateBytes = nil // keep the stored state rather than lose it
	}
	entries := make([]store.OutboxEntry, 0, len(plan.Entries))
	for _, e := range plan.Entries {
		entries = append(entries, store.OutboxEntry(e))
	}

	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	commitErr := d.store.Commit(cctx, store.Commit{
		Snapshot:  snap,
		Changes:   dr.Changes,
		Outbox:    entries,
		DiffState: stateBytes,
	})

	out.Snapshot = snap.ID
	out.Duration = d.now().Sub(started)
	out.HostsUp = snap.HostsUp()
	out.OpenPorts = snap.OpenPorts()
	out.Incomplete = !snap.Complete
	if commitErr != nil {
		out.Result = resultFailed
		out.Err = cleanError(fmt.Errorf("commit: %w", commitErr))
	} else {
		out.Changes = len(dr.Changes)
		d.collector.set(snap)
		m := d.metrics
		for _, c := range dr.Changes {
			m.changes.WithLabelValues(name, string(c.Kind)).Inc()
		}
		if snap.Complete {
			m.setLatest(snap)
		}
		if len(entries) > 0 && d.wake != nil {
			d.wake()
		}
	}
	if d.record != nil {
		d.record(out)
	}
	d.metrics.scans.WithLabelValues(name, out.Result).Inc()
	d.metrics.scanDuration.WithLabelValues(name).Observe(out.Duration.Seconds())
	d.metrics.probesSent.WithLabelValues(name).Add(float64(snap.Quality.ProbesSent))
	d.metrics.retransmits.WithLabelValues(name).Add(float64(snap.Quality.Retransmits))

	attrs := []any{
		"target", name, "result", out.Result, "duration", out.Duration.Round(time.Millisecond),
		"hosts_up", out.HostsUp, "open_ports", out.OpenPorts, "changes", out.Changes,
		"snapshot", snap.ID,
	}
	if out.Err != "" {
		attrs = append(attrs, "err", out.Err)
	}
	level := slog.LevelInfo
	if out.Result == resultFailed {
		level = slog.LevelError
	} else if out.Result == resultIncomplete {
		level = slog.LevelWarn
	}
	d.logger.Log(context.WithoutCancel(ctx), level, "scan finished", attrs...)
	return out
}

// maxErrLen bounds error texts that reach logs, alerts and the status page:
// scanner errors can quote what a remote host sent.
const maxErrLen = 300

func cleanError(err error) string { return textsafe.Clean(err.Error(), maxErrLen) }
