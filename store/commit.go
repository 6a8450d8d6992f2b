package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/exposure-monitor/exposure/snapshot"
)

// Commit is everything one scan produces, written in one transaction (a
// scan of more hosts and ports than a batch stages its runs first, see
// defaultCommitBatch) so a crash leaves either all of it or none.
type Commit struct {
	// Snapshot is the scan; nil when only changes, outbox entries or diff
	// state are written.
	Snapshot *snapshot.Snapshot
	// Changes go to the change log. A zero At becomes the snapshot's start;
	// a zero FirstSeen is filled from the observation runs.
	Changes []snapshot.Change
	// Outbox entries are added unless an entry with the same receiver and
	// key exists (the key is the idempotency key).
	Outbox []OutboxEntry
	// DiffState, when non-nil, replaces the target's diff state.
	DiffState []byte
	// Target names the target of DiffState when Snapshot is nil.
	Target string
}

// Commit writes c atomically. It returns after the data is on disk.
func (s *Store) Commit(ctx context.Context, c Commit) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	target := c.Target
	if c.Snapshot != nil {
		if err := validSnapshot(c.Snapshot); err != nil {
			return err
		}
		target = c.Snapshot.Target
	}
	if c.DiffState != nil {
		if err := checkName("target", target); err != nil {
			return err
		}
	}
	// Encode outside the transaction: it holds the only writer lock. An
	// incomplete scan is stored whole, a complete one as observations for
	// the runs. (A complete scan older than the head, which also needs its
	// blob, is rare enough to compress inside.)
	var blob []byte
	var obs *observations
	if c.Snapshot != nil {
		var err error
		if !c.Snapshot.Complete {
			if blob, err = encodeBlob(c.Snapshot); err != nil {
				return fmt.Errorf("store: encode snapshot %s: %w", c.Snapshot.ID, err)
			}
		} else if obs, err = observe(c.Snapshot); err != nil {
			return fmt.Errorf("store: commit %s: %w", c.Snapshot.ID, err)
		}
	}
	// A large complete scan writes its runs in batches first (stageRuns);
	// staged is the head they advanced from.
	staged := noStage
	if obs != nil && obs.n > s.commitBatch {
		var err error
		if staged, err = s.stage(c.Snapshot, obs); err != nil {
			return fmt.Errorf("store: commit %s: %w", c.Snapshot.ID, err)
		}
	}
	err := s.update(func(tx *bolt.Tx) error {
		if c.Snapshot != nil {
			if err := commitSnapshot(tx, c.Snapshot, blob, obs, staged); err != nil {
				return err
			}
		}
		if err := putChanges(tx, c); err != nil {
			return err
		}
		if err := putOutbox(tx, c.Outbox); err != nil {
			return err
		}
		if c.DiffState != nil {
			v := append([]byte{valueV1}, c.DiffState...)
			b := tx.Bucket(bucketDiffState)
			if bytes.Equal(b.Get([]byte(target)), v) {
				return nil // unchanged: spare the page rewrite
			}
			if err := b.Put([]byte(target), v); err != nil {
				return fmt.Errorf("store: put diff state: %w", err)
			}
		}
		return nil
	})
	if err != nil && staged != noStage {
		if rerr := s.rollbackStaged(scanKey(c.Snapshot.Target, nanos(c.Snapshot.StartedAt))); rerr != nil {
			err = fmt.Errorf("%w (rollback: %v; the next open retries it)", err, rerr)
		}
	}
	if err != nil {
		if c.Snapshot != nil {
			return fmt.Errorf("store: commit %s: %w", c.Snapshot.ID, err)
		}
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

func validSnapshot(sn *snapshot.Snapshot) error {
	if err := checkName("target", sn.Target); err != nil {
		return err
	}
	if sn.ID == "" {
		return fmt.Errorf("store: snapshot of %s has no id", sn.Target)
	}
	if sn.StartedAt.UnixNano() <= 0 {
		return fmt.Errorf("store: snapshot %s: started_at %s is not after 1970", sn.ID, sn.StartedAt)
	}
	for _, h := range sn.Hosts {
		if err := checkName("address", h.Address); err != nil {
			return fmt.Errorf("store: snapshot %s: %w", sn.ID, err)
		}
	}
	return nil
}

func currentRun(rs []run) *run {
	if n := len(rs); n > 0 && rs[n-1].End == 0 {
		return &rs[n-1]
	}
	return nil
}

// noStage is the staged argument of a commit whose runs are not staged.
const noStage int64 = -1

// stage writes the runs of a large complete scan ahead of its commit
// (stageRuns) when it advances the target's head, and returns the head's
// last complete scan it advanced from; noStage when the scan is to be
// kept whole instead (older than the head), or already stored.
func (s *Store) stage(sn *snapshot.Snapshot, obs *observations) (int64, error) {
	ts := nanos(sn.StartedAt)
	var hd head
	stored := false
	if err := s.view(func(tx *bolt.Tx) error {
		stored = tx.Bucket(bucketScans).Get(scanKey(sn.Target, ts)) != nil
		v := tx.Bucket(bucketTargets).Get([]byte(sn.Target))
		if v == nil {
			return nil
		}
		return decode(v, &hd)
	}); err != nil {
		return noStage, err
	}
	if stored || ts <= hd.LastComplete {
		return noStage, nil // commitSnapshot says why, or keeps the blob
	}
	if err := s.stageRuns(sn.Target, ts, obs, hd.LastComplete); err != nil {
		return noStage, err
	}
	return hd.LastComplete, nil
}

// commitSnapshot stores sn; blob is its encoding when incomplete, obs its
// observations when complete. staged is the last complete scan its runs
// were staged against (Store.stage), noStage when they are written here.
func commitSnapshot(tx *bolt.Tx, sn *snapshot.Snapshot, blob []byte, obs *observations, staged int64) error {
	ts := nanos(sn.StartedAt)
	key := scanKey(sn.Target, ts)
	scans := tx.Bucket(bucketScans)
	if scans.Get(key) != nil {
		return fmt.Errorf("a scan of %s started at %s is already stored", sn.Target, sn.StartedAt)
	}
	var hd head
	if v := tx.Bucket(bucketTargets).Get([]byte(sn.Target)); v != nil {
		if err := decode(v, &hd); err != nil {
			return fmt.Errorf("decode head of %s: %w", sn.Target, err)
		}
	}
	rec := scanRecord{
		ID:       sn.ID,
		Finished: nanos(sn.FinishedAt),
		Complete: sn.Complete,
		Quality:  sn.Quality,
		HostsUp:  sn.HostsUp(),
		Open:     sn.OpenPorts(),
	}
	if staged != noStage {
		if hd.LastComplete != staged {
			return fmt.Errorf("another scan of %s was committed while this one was staged", sn.Target)
		}
		if err := tx.Bucket(bucketMeta).Delete(keyPending); err != nil {
			return fmt.Errorf("clear pending: %w", err)
		}
		hd.LastComplete = ts
	} else if sn.Complete && ts > hd.LastComplete {
		if err := advanceRuns(tx, ts, obs, hd.LastComplete); err != nil {
			return err
		}
		hd.LastComplete = ts
	} else {
		// Incomplete scans prove no closure, and a scan older than the head
		// cannot rewrite history: keep them whole.
		rec.Blob = true
		if blob == nil {
			var err error
			if blob, err = encodeBlob(sn); err != nil {
				return fmt.Errorf("encode snapshot: %w", err)
			}
		}
		if err := tx.Bucket(bucketBlobs).Put(key, blob); err != nil {
			return fmt.Errorf("put blob: %w", err)
		}
	}
	hd.Last = max(hd.Last, ts)
	v, err := encode(rec)
	if err != nil {
		return err
	}
	if err := scans.Put(key, v); err != nil {
		return fmt.Errorf("put scan: %w", err)
	}
	if sn.ID != snapshot.NewID(sn.Target, sn.StartedAt) {
		if err := tx.Bucket(bucketIDs).Put([]byte(sn.ID), key); err != nil {
			return fmt.Errorf("put id: %w", err)
		}
	}
	if v, err = encode(hd); err != nil {
		return err
	}
	if err := tx.Bucket(bucketTargets).Put([]byte(sn.Target), v); err != nil {
		return fmt.Errorf("put head: %w", err)
	}
	return nil
}

type observation struct {
	state string
	value json.RawMessage
}

// newRun is the run a key starts at ts in the state (and with the value)
// of o.
func newRun(ts int64, o observation) run {
	nr := run{First: ts, State: o.state}
	if o.value != nil {
		nr.Hist = []value{{At: ts, V: o.value}}
	}
	return nr
}

// runsFillPercent is how full bbolt packs the pages of the hosts and ports
// buckets when it splits them. bbolt's default, half, suits random
// inserts; these keys come in bulk (a baseline writes every key of a
// target at once, in key order) and are rewritten in place afterwards, so
// half-filled pages would double the store's size for nothing.
const runsFillPercent = 0.95

type keyValue struct {
	key   string
	value []byte
}

// putSorted writes puts in key order. bbolt keeps a transaction's writes
// in a sorted in-memory node per page; in map order every insert shifts
// the node's tail, which made a 98,304-port baseline's commit quadratic
// (57 s); in key order each insert is an append.
func putSorted(bk *bolt.Bucket, name []byte, puts []keyValue) error {
	slices.SortFunc(puts, func(a, b keyValue) int { return strings.Compare(a.key, b.key) })
	for _, p := range puts {
		if err := bk.Put([]byte(p.key), p.value); err != nil {
			return fmt.Errorf("put %s: %w", name, err)
		}
	}
	return nil
}

func putChanges(tx *bolt.Tx, c Commit) error {
	b := tx.Bucket(bucketChanges)
	for _, ch := range c.Changes {
		if ch.Target == "" && c.Snapshot != nil {
			ch.Target = c.Snapshot.Target
		}
		if err := checkName("change target", ch.Target); err != nil {
			return err
		}
		if ch.At.IsZero() {
			if c.Snapshot == nil {
				return fmt.Errorf("change %s of %s has no time", ch.Kind, ch.Target)
			}
			ch.At = c.Snapshot.StartedAt
		}
		if ch.Snapshot == "" && c.Snapshot != nil {
			ch.Snapshot = c.Snapshot.ID
		}
		if ch.FirstSeen.IsZero() && c.Snapshot != nil && ch.Address != "" {
			fs, err := firstSeen(tx, ch, c.Snapshot)
			if err != nil {
				return err
			}
			ch.FirstSeen = fs
		}
		seq, err := b.NextSequence()
		if err != nil {
			return fmt.Errorf("change sequence: %w", err)
		}
		v, err := encode(ch)
		if err != nil {
			return fmt.Errorf("encode change: %w", err)
		}
		if err := b.Put(changeKey(ch.Target, nanos(ch.At), seq), v); err != nil {
			return fmt.Errorf("put change: %w", err)
		}
	}
	return nil
}

// firstSeen is when the host or port of ch entered the state it was in
// before this scan (for closures), or this scan's start (for openings),
// read from its runs as this transaction wrote them: a run that this scan
// ended has End == this scan.
func firstSeen(tx *bolt.Tx, ch snapshot.Change, sn *snapshot.Snapshot) (time.Time, error) {
	bucket, key := bucketHosts, hostKey(ch.Target, ch.Address)
	if ch.Port != 0 {
		bucket, key = bucketPorts, portKey(ch.Target, ch.Address, ch.Port, ch.Protocol)
	}
	var rs []run
	if v := tx.Bucket(bucket).Get(key); v != nil {
		var err error
		if rs, err = viewRuns(v); err != nil {
			return time.Time{}, fmt.Errorf("decode %s key %q: %w", bucket, key, err)
		}
	}
	ts := nanos(sn.StartedAt)
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		if r.First < ts && (r.End == 0 || r.End == ts) {
			return fromNanos(r.First), nil
		}
	}
	return sn.StartedAt, nil
}
