package store

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Prune deletes what retention no longer needs: scans that started before
// before (except each target's latest complete scan, so Latest and At keep
// working), changes older than before, runs that ended before before and
// service or hostname values superseded before it. It returns the number of
// scans deleted.
//
// It works in bounded transactions: each examines at most the store's
// prune batch of keys (defaultPruneBatch) of one bucket of one target and
// commits, so a scan's commit, which needs the one writer lock, waits for
// one batch at most, never for a whole year of an estate's history. Each
// batch re-reads what it decides on, so commits between batches are safe.
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	var targets []string
	err := s.view(func(tx *bolt.Tx) error {
		seen := map[string]bool{}
		if err := tx.Bucket(bucketTargets).ForEach(func(k, _ []byte) error {
			seen[string(k)] = true
			targets = append(targets, string(k))
			return nil
		}); err != nil {
			return err
		}
		more, err := changeTargets(tx)
		for _, t := range more {
			if !seen[t] {
				targets = append(targets, t)
			}
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: prune: %w", err)
	}
	cut := nanos(before)
	total := 0
	for _, t := range targets {
		for _, step := range []pruneStep{pruneScans, pruneChanges, pruneRunsIn(bucketHosts), pruneRunsIn(bucketPorts)} {
			from := prefix(t)
			for from != nil {
				if err := ctx.Err(); err != nil {
					return total, fmt.Errorf("store: prune: %w", err)
				}
				start := time.Now()
				err := s.update(func(tx *bolt.Tx) error {
					next, n, err := step(tx, t, from, cut, s.pruneBatch)
					from = next
					total += n
					return err
				})
				if d := time.Since(start); d > time.Duration(s.pruneLongest.Load()) {
					s.pruneLongest.Store(int64(d))
				}
				if err != nil {
					return total, fmt.Errorf("store: prune %s: %w", t, err)
				}
			}
		}
	}
	return total, nil
}

// defaultPruneBatch bounds the keys one prune transaction examines: about
// 1,000 port runs decode, trim and rewrite in some 10 ms.
const defaultPruneBatch = 1000

// pruneStep prunes at most batch keys of target's from from (a key of the
// target, its prefix at first) and returns the key to go on from (nil when
// the target's keys of the step are done) and the scans it deleted.
type pruneStep func(tx *bolt.Tx, target string, from []byte, cut int64, batch int) ([]byte, int, error)

// batchWalk visits up to batch keys of bucket b from from under target's
// prefix p, and returns where the next batch starts. Keys are collected
// first: deleting under a cursor skips the next key in bbolt.
func batchWalk(b *bolt.Bucket, p, from []byte, batch int, visit func(k, v []byte) (stop bool, err error)) ([]byte, error) {
	c := b.Cursor()
	n := 0
	for k, v := c.Seek(from); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if n == batch {
			return bytes.Clone(k), nil
		}
		n++
		stop, err := visit(k, v)
		if err != nil || stop {
			return nil, err
		}
	}
	return nil, nil
}

func pruneScans(tx *bolt.Tx, target string, from []byte, cut int64, batch int) ([]byte, int, error) {
	var hd head
	if v := tx.Bucket(bucketTargets).Get([]byte(target)); v != nil {
		if err := decode(v, &hd); err != nil {
			return nil, 0, fmt.Errorf("decode head: %w", err)
		}
	}
	var old, ids [][]byte
	next, err := batchWalk(tx.Bucket(bucketScans), prefix(target), from, batch, func(k, v []byte) (bool, error) {
		_, started, _ := splitScanKey(k)
		if started >= cut {
			return true, nil
		}
		if started == hd.LastComplete {
			return false, nil
		}
		var rec scanRecord
		if err := decode(v, &rec); err != nil {
			return false, fmt.Errorf("decode scan %q: %w", k, err)
		}
		old = append(old, bytes.Clone(k))
		if rec.ID != "" {
			ids = append(ids, []byte(rec.ID))
		}
		return false, nil
	})
	if err != nil {
		return nil, 0, err
	}
	for _, id := range ids {
		if err := tx.Bucket(bucketIDs).Delete(id); err != nil {
			return nil, 0, err
		}
	}
	for _, k := range old {
		if err := tx.Bucket(bucketScans).Delete(k); err != nil {
			return nil, 0, err
		}
		if err := tx.Bucket(bucketBlobs).Delete(k); err != nil {
			return nil, 0, err
		}
	}
	return next, len(old), nil
}

func pruneChanges(tx *bolt.Tx, target string, from []byte, cut int64, batch int) ([]byte, int, error) {
	var old [][]byte
	next, err := batchWalk(tx.Bucket(bucketChanges), prefix(target), from, batch, func(k, _ []byte) (bool, error) {
		if _, at, _ := splitChangeKey(k); at >= cut {
			return true, nil
		}
		old = append(old, bytes.Clone(k))
		return false, nil
	})
	if err != nil {
		return nil, 0, err
	}
	for _, k := range old {
		if err := tx.Bucket(bucketChanges).Delete(k); err != nil {
			return nil, 0, err
		}
	}
	return next, 0, nil
}

// pruneRunsIn is the step that trims the runs of the hosts or ports bucket.
func pruneRunsIn(name []byte) pruneStep {
	return func(tx *bolt.Tx, target string, from []byte, cut int64, batch int) ([]byte, int, error) {
		var edits []keyEdit
		b := tx.Bucket(name)
		b.FillPercent = runsFillPercent
		next, err := batchWalk(b, prefix(target), from, batch, func(k, v []byte) (bool, error) {
			rs, err := decodeRuns(v)
			if err != nil {
				return false, fmt.Errorf("decode %s %q: %w", name, k, err)
			}
			kept, changed := pruneRuns(rs, cut)
			if !changed {
				return false, nil
			}
			var nv []byte
			if len(kept) > 0 {
				nv = encodeRuns(kept)
			}
			edits = append(edits, keyEdit{bytes.Clone(k), nv})
			return false, nil
		})
		if err != nil {
			return nil, 0, err
		}
		if err := applyEdits(b, edits); err != nil {
			return nil, 0, err
		}
		return next, 0, nil
	}
}

// pruneRuns drops runs that ended before cut and, inside the rest, values
// that were already superseded at cut.
func pruneRuns(rs []run, cut int64) ([]run, bool) {
	changed := false
	kept := rs[:0:0]
	for _, r := range rs {
		if r.End != 0 && r.End <= cut {
			changed = true
			continue
		}
		// Keep the value in force at cut and everything after it.
		i := 0
		for i+1 < len(r.Hist) && r.Hist[i+1].At <= cut {
			i++
		}
		if i > 0 {
			r.Hist = r.Hist[i:]
			changed = true
		}
		kept = append(kept, r)
	}
	return kept, changed
}
