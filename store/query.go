package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/exposure-monitor/exposure/snapshot"
)

// ScanInfo is the record of one stored scan without its hosts.
type ScanInfo struct {
	ID         string
	Target     string
	StartedAt  time.Time
	FinishedAt time.Time
	Complete   bool
	Quality    snapshot.Quality
	HostsUp    int
	OpenPorts  int
}

func (r scanRecord) info(target string, started int64) ScanInfo {
	return ScanInfo{
		ID: r.ID, Target: target, StartedAt: fromNanos(started), FinishedAt: fromNanos(r.Finished),
		Complete: r.Complete, Quality: r.Quality, HostsUp: r.HostsUp, OpenPorts: r.Open,
	}
}

// Targets lists the targets that have scans, in name order.
func (s *Store) Targets() ([]string, error) {
	var out []string
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTargets).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: targets: %w", err)
	}
	return out, nil
}

// Latest is the most recent scan of target, complete or not.
func (s *Store) Latest(target string) (*snapshot.Snapshot, error) {
	return s.find(target, math.MaxInt64, false)
}

// LatestComplete is the most recent complete scan of target.
func (s *Store) LatestComplete(target string) (*snapshot.Snapshot, error) {
	return s.find(target, math.MaxInt64, true)
}

// At is the exposure of target as known at t: the last complete scan that
// started at or before t.
func (s *Store) At(target string, t time.Time) (*snapshot.Snapshot, error) {
	return s.find(target, nanos(t), true)
}

func (s *Store) find(target string, t int64, complete bool) (*snapshot.Snapshot, error) {
	var out *snapshot.Snapshot
	err := s.view(func(tx *bolt.Tx) error {
		started, rec, err := findRecord(tx, target, t, complete)
		if err != nil {
			return err
		}
		out, err = load(tx, target, started, rec)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: scan of %s: %w", target, err)
	}
	return out, nil
}

// LatestCompleteID is the id of LatestComplete's snapshot, read without
// the snapshot: a caller holding that snapshot already (the daemon keeps
// each target's latest) checks it is still the latest.
func (s *Store) LatestCompleteID(target string) (string, error) {
	var id string
	err := s.view(func(tx *bolt.Tx) error {
		_, rec, err := findRecord(tx, target, math.MaxInt64, true)
		id = rec.ID
		return err
	})
	if err != nil {
		return "", fmt.Errorf("store: scan of %s: %w", target, err)
	}
	return id, nil
}

// findRecord is the record of target's last scan (complete when complete
// is set) started at or before t, and its start.
func findRecord(tx *bolt.Tx, target string, t int64, complete bool) (int64, scanRecord, error) {
	p := prefix(target)
	c := tx.Bucket(bucketScans).Cursor()
	for k, v := seekAtOrBefore(c, scanKey(target, t)); k != nil && bytes.HasPrefix(k, p); k, v = c.Prev() {
		var rec scanRecord
		if err := decode(v, &rec); err != nil {
			return 0, scanRecord{}, fmt.Errorf("decode scan %q: %w", k, err)
		}
		if complete && !rec.Complete {
			continue
		}
		_, started, _ := splitScanKey(k)
		return started, rec, nil
	}
	return 0, scanRecord{}, ErrNotFound
}

// seekAtOrBefore positions c on the last key <= k.
func seekAtOrBefore(c *bolt.Cursor, k []byte) ([]byte, []byte) {
	ck, cv := c.Seek(k)
	if ck == nil {
		return c.Last()
	}
	if !bytes.Equal(ck, k) {
		return c.Prev()
	}
	return ck, cv
}

// Snapshot returns the scan with the given id.
func (s *Store) Snapshot(id string) (*snapshot.Snapshot, error) {
	var out *snapshot.Snapshot
	err := s.view(func(tx *bolt.Tx) error {
		key := tx.Bucket(bucketIDs).Get([]byte(id))
		if key == nil {
			target, started, ok := parseID(id)
			if !ok || checkName("target", target) != nil {
				return ErrNotFound
			}
			key = scanKey(target, started)
		}
		target, started, ok := splitScanKey(key)
		if !ok {
			return fmt.Errorf("bad scan key %q", key)
		}
		v := tx.Bucket(bucketScans).Get(key)
		if v == nil {
			return ErrNotFound
		}
		var rec scanRecord
		if err := decode(v, &rec); err != nil {
			return fmt.Errorf("decode scan %q: %w", key, err)
		}
		if rec.ID != id {
			return ErrNotFound
		}
		var err error
		out, err = load(tx, target, started, rec)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: snapshot %s: %w", id, err)
	}
	return out, nil
}

// Scans lists up to limit scans of target, newest first (limit <= 0: all).
func (s *Store) Scans(target string, limit int) ([]ScanInfo, error) {
	var out []ScanInfo
	err := s.view(func(tx *bolt.Tx) error {
		p := prefix(target)
		c := tx.Bucket(bucketScans).Cursor()
		for k, v := seekAtOrBefore(c, scanKey(target, math.MaxInt64)); k != nil && bytes.HasPrefix(k, p); k, v = c.Prev() {
			var rec scanRecord
			if err := decode(v, &rec); err != nil {
				return fmt.Errorf("decode scan %q: %w", k, err)
			}
			_, started, _ := splitScanKey(k)
			out = append(out, rec.info(target, started))
			if limit > 0 && len(out) == limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: scans of %s: %w", target, err)
	}
	return out, nil
}

// load builds the snapshot of one scan record from its blob or the runs.
func load(tx *bolt.Tx, target string, started int64, rec scanRecord) (*snapshot.Snapshot, error) {
	if rec.Blob {
		v := tx.Bucket(bucketBlobs).Get(scanKey(target, started))
		if v == nil {
			return nil, fmt.Errorf("scan %s: blob missing", rec.ID)
		}
		sn, err := decodeBlob(v)
		if err != nil {
			return nil, fmt.Errorf("scan %s: decode blob: %w", rec.ID, err)
		}
		return sn, nil
	}
	sn := &snapshot.Snapshot{
		Target: target, ID: rec.ID, StartedAt: fromNanos(started), FinishedAt: fromNanos(rec.Finished),
		Complete: rec.Complete, Quality: rec.Quality, Hosts: []snapshot.Host{},
	}
	index := map[string]int{}
	// Services are decoded once per distinct encoding and shared, as the
	// daemon shares them (snapshot.ShareServices): an estate's ports
	// carry a few services, not one copy each.
	services := map[string]*snapshot.Service{}
	var scratch runScratch
	p := prefix(target)
	c := tx.Bucket(bucketHosts).Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		rs, err := scratch.view(v)
		if err != nil {
			return nil, fmt.Errorf("decode host %q: %w", k, err)
		}
		for i := range rs {
			if !rs[i].contains(started) {
				continue
			}
			h := snapshot.Host{Address: string(k[len(p):]), State: rs[i].State, Ports: []snapshot.Port{}}
			if v := rs[i].valueAt(started); v != nil {
				if err := decodeHostValue(v, &h); err != nil {
					return nil, fmt.Errorf("decode hostname of %q: %w", k, err)
				}
			}
			index[h.Address] = len(sn.Hosts)
			sn.Hosts = append(sn.Hosts, h)
			break
		}
	}
	c = tx.Bucket(bucketPorts).Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		rs, err := scratch.view(v)
		if err != nil {
			return nil, fmt.Errorf("decode port %q: %w", k, err)
		}
		for i := range rs {
			if !rs[i].contains(started) {
				continue
			}
			addr, port, proto, ok := splitPortKey(target, k)
			if !ok {
				return nil, fmt.Errorf("bad port key %q", k)
			}
			pt := snapshot.Port{Port: port, Protocol: proto, State: rs[i].State}
			if v := rs[i].valueAt(started); v != nil {
				if pt.Service = services[string(v)]; pt.Service == nil {
					pt.Service = new(snapshot.Service)
					if err := json.Unmarshal(v, pt.Service); err != nil {
						return nil, fmt.Errorf("decode service of %q: %w", k, err)
					}
					services[string(v)] = pt.Service
				}
			}
			hi, ok := index[addr]
			if !ok { // a port without its host record: keep the port visible
				hi = len(sn.Hosts)
				index[addr] = hi
				sn.Hosts = append(sn.Hosts, snapshot.Host{Address: addr, State: snapshot.HostUp})
			}
			sn.Hosts[hi].Ports = append(sn.Hosts[hi].Ports, pt)
			break
		}
	}
	sn.Sort()
	return sn, nil
}

// Changes lists the changes of target (all targets when target is "")
// with from <= At < to, oldest first. A zero to means no upper bound.
func (s *Store) Changes(target string, from, to time.Time) ([]snapshot.Change, error) {
	return s.ChangesLimit(target, from, to, 0)
}

// ChangesLimit is Changes, cut to the first limit changes (no limit when
// limit <= 0). It reads at most limit changes per target, so a page of a
// long history costs the page, not the history.
func (s *Store) ChangesLimit(target string, from, to time.Time, limit int) ([]snapshot.Change, error) {
	lo, hi := int64(0), int64(math.MaxInt64)
	if !from.IsZero() {
		lo = max(nanos(from), 0)
	}
	if !to.IsZero() {
		hi = nanos(to)
	}
	var out []snapshot.Change
	err := s.view(func(tx *bolt.Tx) error {
		targets := []string{target}
		if target == "" {
			var err error
			if targets, err = changeTargets(tx); err != nil {
				return err
			}
		}
		c := tx.Bucket(bucketChanges).Cursor()
		for _, t := range targets {
			p := prefix(t)
			n := 0
			for k, v := c.Seek(scanKey(t, lo)); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
				_, at, _ := splitChangeKey(k)
				if at >= hi || limit > 0 && n >= limit {
					break
				}
				n++
				var ch snapshot.Change
				if err := decode(v, &ch); err != nil {
					return fmt.Errorf("decode change %q: %w", k, err)
				}
				out = append(out, ch)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: changes: %w", err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	if limit > 0 && len(out) > limit {
		out = out[:limit:limit]
	}
	return out, nil
}

func splitChangeKey(k []byte) (string, int64, bool) {
	if len(k) < 18 || k[len(k)-17] != sep {
		return "", 0, false
	}
	return string(k[:len(k)-17]), int64(binary.BigEndian.Uint64(k[len(k)-16:])), true
}

// DiffState is the diff engine's state for target, nil if none was stored.
func (s *Store) DiffState(target string) ([]byte, error) {
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketDiffState).Get([]byte(target))
		if v == nil {
			return nil
		}
		if v[0] != valueV1 {
			return fmt.Errorf("value format version %d", v[0])
		}
		out = bytes.Clone(v[1:])
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: diff state of %s: %w", target, err)
	}
	return out, nil
}

// changeTargets lists the targets that have changes, hopping from one
// target's keys to the next rather than reading them all. Changes
// committed without a scan may name targets the targets bucket lacks.
func changeTargets(tx *bolt.Tx) ([]string, error) {
	var targets []string
	c := tx.Bucket(bucketChanges).Cursor()
	for k, _ := c.First(); k != nil; {
		t, _, ok := splitChangeKey(k)
		if !ok {
			return nil, fmt.Errorf("bad change key %q", k)
		}
		targets = append(targets, t)
		// The first key after every key of t: t 0x00 0xff... is beyond any
		// time, then step past an exact hit.
		end := append(prefix(t), bytes.Repeat([]byte{0xff}, 17)...)
		k, _ = c.Seek(end)
	}
	return targets, nil
}
