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
// scans deleted. Each target is pruned in its own transaction.
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
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("store: prune: %w", err)
		}
		n := 0
		err := s.update(func(tx *bolt.Tx) error {
			var err error
			n, err = pruneTarget(tx, t, cut)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("store: prune %s: %w", t, err)
		}
		total += n
	}
	return total, nil
}

func pruneTarget(tx *bolt.Tx, target string, cut int64) (int, error) {
	var hd head
	if v := tx.Bucket(bucketTargets).Get([]byte(target)); v != nil {
		if err := decode(v, &hd); err != nil {
			return 0, fmt.Errorf("decode head: %w", err)
		}
	}
	p := prefix(target)
	n := 0
	// Deleting under a cursor skips the next key in bbolt; collect first.
	var old [][]byte
	c := tx.Bucket(bucketScans).Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		_, started, _ := splitScanKey(k)
		if started >= cut {
			break
		}
		if started == hd.LastComplete {
			continue
		}
		var rec scanRecord
		if err := decode(v, &rec); err != nil {
			return 0, fmt.Errorf("decode scan %q: %w", k, err)
		}
		old = append(old, bytes.Clone(k))
		if rec.ID != "" {
			old = append(old, append([]byte{sep}, rec.ID...)) // marker for the ids index
		}
	}
	for _, k := range old {
		if k[0] == sep {
			if err := tx.Bucket(bucketIDs).Delete(k[1:]); err != nil {
				return 0, err
			}
			continue
		}
		if err := tx.Bucket(bucketScans).Delete(k); err != nil {
			return 0, err
		}
		if err := tx.Bucket(bucketBlobs).Delete(k); err != nil {
			return 0, err
		}
		n++
	}

	old = old[:0]
	c = tx.Bucket(bucketChanges).Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		if _, at, _ := splitChangeKey(k); at >= cut {
			break
		}
		old = append(old, bytes.Clone(k))
	}
	for _, k := range old {
		if err := tx.Bucket(bucketChanges).Delete(k); err != nil {
			return 0, err
		}
	}

	for _, name := range [][]byte{bucketHosts, bucketPorts} {
		type kv struct{ k, v []byte }
		var edits []kv
		b := tx.Bucket(name)
		c := b.Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			rs, err := decodeRuns(v)
			if err != nil {
				return 0, fmt.Errorf("decode %s %q: %w", name, k, err)
			}
			kept, changed := pruneRuns(rs, cut)
			if !changed {
				continue
			}
			var nv []byte
			if len(kept) > 0 {
				nv = encodeRuns(kept)
			}
			edits = append(edits, kv{bytes.Clone(k), nv})
		}
		for _, e := range edits {
			var err error
			if e.v == nil {
				err = b.Delete(e.k)
			} else {
				err = b.Put(e.k, e.v)
			}
			if err != nil {
				return 0, err
			}
		}
	}
	return n, nil
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
