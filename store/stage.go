package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/exposure-monitor/exposure/snapshot"
)

// A complete scan's hosts and ports advance their runs in a walk that
// merges the target's keys (a bbolt cursor) with the scan's observations
// in the same key order (obsSeq), so no map of the estate's keys is
// built. A scan of at most Store.commitBatch hosts and ports commits in
// one transaction. A larger one (a baseline of a /16 writes 163,840 keys)
// is staged: its keys go in transactions of commitBatch, the first of
// which records the scan as pending in the meta bucket, and the last
// transaction (scan record, head, changes, outbox, diff state) clears it.
// Memory then follows a batch, not the scan: bbolt keeps every key and
// value of a transaction, and a page for each, until it commits.
//
// A staged scan is invisible until its last transaction: readers rebuild
// the head's scan, and every run a staged batch writes starts, ends or
// changes value at the scan's start, which is after the head. A crash or
// an error in between leaves the pending record, and Open (or the failed
// Commit itself) rolls the batches back (rollbackStaged): runs that
// begin at the scan's start are removed, a run it ended is current again,
// and a value it added is dropped. So a crash still leaves all of a
// commit or none of it.

// defaultCommitBatch is how many keys a staged commit writes per
// transaction (Store.commitBatch).
const defaultCommitBatch = 16384

// keyPending in the meta bucket names a staged scan not yet committed:
// target 0x00 started(8 BE nanos), as a scans key.
var keyPending = []byte("pending")

// obsSeq yields the observations of one bucket (hosts or ports) of a
// complete snapshot in key order. Hosts listed twice are merged as a map
// would: the last one's value wins, ports of both are observed.
type obsSeq struct {
	sn    *snapshot.Snapshot
	ports bool
	pre   []byte
	enc   map[*snapshot.Service]json.RawMessage
	// order is the host indices by address, groups the bounds of the
	// runs of equal addresses in it.
	order  []int32
	groups []int
	g      int // next group
	// refs are the current group's ports in key order, at the next one.
	refs []portRef
	r    int

	key   []byte
	obs   observation
	valid bool
}

type portRef struct{ host, port int32 }

func newObsSeq(sn *snapshot.Snapshot, ports bool, order []int32, groups []int, enc map[*snapshot.Service]json.RawMessage) *obsSeq {
	return &obsSeq{sn: sn, ports: ports, pre: prefix(sn.Target), enc: enc, order: order, groups: groups}
}

// hostOrder sorts the snapshot's host indices by address, stable, and
// returns them with the bounds of each address's run.
func hostOrder(sn *snapshot.Snapshot) ([]int32, []int) {
	order := make([]int32, len(sn.Hosts))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return strings.Compare(sn.Hosts[a].Address, sn.Hosts[b].Address) })
	groups := []int{0}
	for i := 1; i <= len(order); i++ {
		if i == len(order) || sn.Hosts[order[i]].Address != sn.Hosts[order[i-1]].Address {
			groups = append(groups, i)
		}
	}
	return order, groups
}

// next moves to the next observation; valid is false at the end.
func (q *obsSeq) next() error {
	q.valid = false
	if !q.ports {
		if q.g+1 >= len(q.groups) {
			return nil
		}
		h := &q.sn.Hosts[q.order[q.groups[q.g+1]-1]] // the last of its address
		q.g++
		q.key = append(append(q.key[:0], q.pre...), h.Address...)
		q.obs, q.valid = observation{h.State, encodeHostValue(*h)}, true
		return nil
	}
	for q.r >= len(q.refs) {
		if q.g+1 >= len(q.groups) {
			return nil
		}
		q.refs, q.r = q.refs[:0], 0
		for _, hi := range q.order[q.groups[q.g]:q.groups[q.g+1]] {
			for pi := range q.sn.Hosts[hi].Ports {
				q.refs = append(q.refs, portRef{hi, int32(pi)})
			}
		}
		q.g++
		slices.SortStableFunc(q.refs, func(a, b portRef) int {
			pa, pb := &q.sn.Hosts[a.host].Ports[a.port], &q.sn.Hosts[b.host].Ports[b.port]
			if pa.Port != pb.Port {
				return int(pa.Port) - int(pb.Port)
			}
			return strings.Compare(pa.Protocol, pb.Protocol)
		})
	}
	// Of equal keys the last wins.
	for q.r+1 < len(q.refs) && samePort(q.sn, q.refs[q.r], q.refs[q.r+1]) {
		q.r++
	}
	ref := q.refs[q.r]
	q.r++
	h, p := &q.sn.Hosts[ref.host], &q.sn.Hosts[ref.host].Ports[ref.port]
	q.key = append(append(q.key[:0], q.pre...), h.Address...)
	q.key = append(q.key, sep)
	q.key = binary.BigEndian.AppendUint16(q.key, p.Port)
	q.key = append(q.key, p.Protocol...)
	var svc json.RawMessage
	if p.Service != nil {
		if svc = q.enc[p.Service]; svc == nil {
			var err error
			if svc, err = json.Marshal(p.Service); err != nil {
				return fmt.Errorf("encode service: %w", err)
			}
			q.enc[p.Service] = svc
		}
	}
	q.obs, q.valid = observation{p.State, svc}, true
	return nil
}

func samePort(sn *snapshot.Snapshot, a, b portRef) bool {
	pa, pb := &sn.Hosts[a.host].Ports[a.port], &sn.Hosts[b.host].Ports[b.port]
	return pa.Port == pb.Port && pa.Protocol == pb.Protocol
}

// observations are a complete scan's hosts and ports, each walked once
// in key order.
type observations struct {
	hosts, ports *obsSeq
	n            int // keys observed, at most
}

func observe(sn *snapshot.Snapshot) (*observations, error) {
	order, groups := hostOrder(sn)
	// Ports that share a Service (snapshot.ShareServices) share its
	// encoding too.
	enc := map[*snapshot.Service]json.RawMessage{}
	o := &observations{hosts: newObsSeq(sn, false, order, groups, enc), ports: newObsSeq(sn, true, order, groups, enc)}
	o.n = len(sn.Hosts)
	for _, h := range sn.Hosts {
		o.n += len(h.Ports)
	}
	if err := o.hosts.next(); err != nil {
		return nil, err
	}
	if err := o.ports.next(); err != nil {
		return nil, err
	}
	return o, nil
}

// runWalk is the walk of one bucket of one target's keys: where the
// cursor resumes (after key from), and the observations still to merge.
type runWalk struct {
	bucket []byte
	seq    *obsSeq
	from   []byte
	done   bool
}

// advance merges the bucket's keys after w.from with w.seq for the scan
// started at ts, rewriting the keys whose state or value differs from
// their current run, until limit keys are rewritten or both are done.
// It returns how many keys it rewrote.
func (w *runWalk) advance(tx *bolt.Tx, ts, prevComplete int64, limit int) (int, error) {
	seq := w.seq
	bk := tx.Bucket(w.bucket)
	// Host and port keys are written in key order with pages filled
	// (see putSorted); a baseline's are all new.
	bk.FillPercent = runsFillPercent
	var puts []keyValue
	put := func(k []byte, rs []run) {
		// Encoded at once: rs may alias the page the cursor is on.
		puts = append(puts, keyValue{string(k), encodeRuns(rs)})
	}
	var scratch runScratch
	c := bk.Cursor()
	var k, v []byte
	if w.from == nil {
		k, v = c.Seek(seq.pre)
	} else if k, v = c.Seek(w.from); k != nil && bytes.Equal(k, w.from) {
		k, v = c.Next()
	}
	for walked := 1; len(puts) < limit; walked++ {
		if walked%releaseEvery == 0 {
			// The walk reads every page of the target's keys through
			// bbolt's mapping: let go of those behind it, so that a
			// re-scan of an estate does not bring the file into the RSS.
			if err := releaseMapped(tx); err != nil {
				return 0, err
			}
		}
		if k != nil && !bytes.HasPrefix(k, seq.pre) {
			k = nil
		}
		if k == nil && !seq.valid {
			w.done = true
			break
		}
		cmp := 1 // the observation comes first
		if k != nil && seq.valid {
			cmp = -bytes.Compare(seq.key, k)
		} else if k != nil {
			cmp = -1
		}
		switch {
		case cmp > 0: // observed, not stored: a new key
			put(seq.key, []run{newRun(ts, seq.obs)})
			w.from = append(w.from[:0], seq.key...)
			if err := seq.next(); err != nil {
				return 0, err
			}
			continue
		}
		rs, err := scratch.view(v)
		if err != nil {
			return 0, fmt.Errorf("decode %s key %q: %w", w.bucket, k, err)
		}
		ok := cmp == 0
		o := seq.obs
		cur := currentRun(rs)
		switch {
		case cur == nil:
			if ok { // back after its runs ended
				put(k, append(rs, newRun(ts, o)))
			}
		case ok && o.state == cur.State:
			if !bytes.Equal(o.value, cur.current()) {
				cur.Hist = append(cur.Hist, value{At: ts, V: o.value})
				put(k, rs)
			}
		default:
			cur.Last, cur.End = prevComplete, ts
			if ok {
				rs = append(rs, newRun(ts, o))
			}
			put(k, rs)
		}
		w.from = append(w.from[:0], k...)
		if ok {
			if err := seq.next(); err != nil {
				return 0, err
			}
		}
		k, v = c.Next()
	}
	return len(puts), putSorted(bk, w.bucket, puts)
}

// releaseEvery is how many keys a walk reads between releases of the
// mapped pages behind it.
const releaseEvery = 8192

// walks are the two walks of a complete scan's observations.
func (o *observations) walks() []*runWalk {
	return []*runWalk{{bucket: bucketHosts, seq: o.hosts}, {bucket: bucketPorts, seq: o.ports}}
}

// advanceRuns moves the runs of the scan's target to its complete scan
// started at ts in one transaction.
func advanceRuns(tx *bolt.Tx, ts int64, obs *observations, prevComplete int64) error {
	for _, w := range obs.walks() {
		if _, err := w.advance(tx, ts, prevComplete, int(^uint(0)>>1)); err != nil {
			return err
		}
	}
	return nil
}

// stageRuns advances the runs of a large complete scan in transactions of
// commitBatch keys before its last one, recording it as pending first.
// On an error it rolls back what it wrote.
func (s *Store) stageRuns(target string, ts int64, obs *observations, prevComplete int64) (err error) {
	pending := scanKey(target, ts)
	marked := false
	defer func() {
		if err != nil && marked {
			if rerr := s.rollbackStaged(pending); rerr != nil {
				err = fmt.Errorf("%w (rollback: %v; the next open retries it)", err, rerr)
			}
		}
	}()
	for _, w := range obs.walks() {
		for !w.done {
			err := s.update(func(tx *bolt.Tx) error {
				if !marked {
					if err := tx.Bucket(bucketMeta).Put(keyPending, pending); err != nil {
						return fmt.Errorf("put pending: %w", err)
					}
				}
				_, err := w.advance(tx, ts, prevComplete, s.commitBatch)
				return err
			})
			if err != nil {
				return err
			}
			marked = true
			if s.staged != nil {
				if err := s.staged(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// rollbackStaged undoes the staged batches of the scan whose scans key is
// pending (see the comment at defaultCommitBatch) and clears the pending record.
// It is idempotent, so a crash during it is undone by the next.
func (s *Store) rollbackStaged(pending []byte) error {
	target, ts, ok := splitScanKey(pending)
	if !ok {
		return fmt.Errorf("bad pending record %q", pending)
	}
	pre := prefix(target)
	for _, name := range [][]byte{bucketHosts, bucketPorts} {
		from := []byte(nil)
		for done := false; !done; {
			err := s.update(func(tx *bolt.Tx) error {
				bk := tx.Bucket(name)
				var edits []keyEdit
				c := bk.Cursor()
				k, v := c.Seek(pre)
				if from != nil {
					if k, v = c.Seek(from); k != nil && bytes.Equal(k, from) {
						k, v = c.Next()
					}
				}
				for ; len(edits) < s.commitBatch; k, v = c.Next() {
					if k == nil || !bytes.HasPrefix(k, pre) {
						done = true
						break
					}
					from = append(from[:0], k...)
					rs, err := decodeRuns(v)
					if err != nil {
						return fmt.Errorf("decode %s key %q: %w", name, k, err)
					}
					if out, changed := unstage(rs, ts); changed {
						e := keyEdit{key: slices.Clone(k)}
						if len(out) > 0 {
							e.val = encodeRuns(out)
						}
						edits = append(edits, e)
					}
				}
				if err := applyEdits(bk, edits); err != nil {
					return fmt.Errorf("roll back %s: %w", name, err)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	return s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyPending) })
}

// unstage undoes on one key's runs what a staged scan started at ts did.
func unstage(rs []run, ts int64) ([]run, bool) {
	changed := false
	out := rs[:0]
	for _, r := range rs {
		if r.First == ts {
			changed = true
			continue
		}
		if r.End == ts {
			r.End, r.Last, changed = 0, 0, true
		}
		if n := len(r.Hist); n > 0 && r.Hist[n-1].At == ts {
			r.Hist, changed = r.Hist[:n-1], true
		}
		out = append(out, r)
	}
	return out, changed
}

// recoverStaged rolls back a staged scan a crash left pending.
func (s *Store) recoverStaged() error {
	var pending []byte
	if err := s.view(func(tx *bolt.Tx) error {
		pending = slices.Clone(tx.Bucket(bucketMeta).Get(keyPending))
		return nil
	}); err != nil || pending == nil {
		return err
	}
	return s.rollbackStaged(pending)
}

// keyEdit is a key's new value, or its deletion (val nil), decided while a
// cursor walked the bucket and applied after (applyEdits).
type keyEdit struct{ key, val []byte }

func applyEdits(bk *bolt.Bucket, edits []keyEdit) error {
	for _, e := range edits {
		var err error
		if e.val == nil {
			err = bk.Delete(e.key)
		} else {
			err = bk.Put(e.key, e.val)
		}
		if err != nil {
			return fmt.Errorf("key %q: %w", e.key, err)
		}
	}
	return nil
}
