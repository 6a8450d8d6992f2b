package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/exposure-monitor/exposure/snapshot"
)

// dumpRunsAndHeads is every key and value of the buckets a staged commit
// writes, for comparing stores byte for byte.
func dumpRunsAndHeads(t *testing.T, s *Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, s.view(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketScans, bucketTargets, bucketHosts, bucketPorts, bucketDiffState} {
			require.NoError(t, tx.Bucket(b).ForEach(func(k, v []byte) error {
				out[string(b)+"/"+string(k)] = string(v)
				return nil
			}))
		}
		return nil
	}))
	return out
}

// churned is estate's snapshot at at with churn: every third host's port
// 80 closed, every fifth's nginx a new version, and port 8080 opened on
// every seventh; with a changed hostname on every eleventh host.
func churned(at time.Time, octets int) *snapshot.Snapshot {
	sn := estate(at, octets)
	web2 := &snapshot.Service{Name: "http", Product: "nginx", Version: "1.26.0"}
	for i := range sn.Hosts {
		h := &sn.Hosts[i]
		var ports []snapshot.Port
		for _, p := range h.Ports {
			switch {
			case p.Port == 80 && i%3 == 0:
				continue
			case p.Port == 80 && i%5 == 0:
				p.Service = web2
			}
			ports = append(ports, p)
		}
		if i%7 == 0 {
			ports = append(ports, snapshot.Port{Port: 8080, Protocol: "tcp", State: snapshot.StateOpen, Service: web2})
		}
		h.Ports = ports
		if i%11 == 0 {
			h.Hostname = fmt.Sprintf("h%d.example.test", i)
		}
	}
	return sn
}

// TestStagedCommit: a scan larger than a commit batch is written in
// batches and reads back exactly as a one-transaction commit writes it;
// a batch that fails rolls back to the store as it was; and a crash
// after some batches (the file copied then) is rolled back when the copy
// opens, to the same bytes.
func TestStagedCommit(t *testing.T) {
	at := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	const octets = 8 // 2,048 hosts, 3,072 open ports
	open := func(t *testing.T, path string, batch int) *Store {
		s, err := Open(path, Options{NoSync: true})
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		s.commitBatch = batch
		return s
	}
	dir := t.TempDir()
	one := open(t, filepath.Join(dir, "one.db"), 1<<30) // one transaction
	staged := open(t, filepath.Join(dir, "staged.db"), 100)
	batches := 0
	staged.staged = func() error { batches++; return nil }
	for i, sn := range []*snapshot.Snapshot{estate(at, octets), churned(at.Add(time.Hour), octets), estate(at.Add(2*time.Hour), octets)} {
		require.NoError(t, one.Commit(context.Background(), Commit{Snapshot: sn}))
		before := batches
		require.NoError(t, staged.Commit(context.Background(), Commit{Snapshot: sn}))
		require.Greater(t, batches-before, 1, "scan %d was not staged", i+1)
		require.Equal(t, dumpRunsAndHeads(t, one), dumpRunsAndHeads(t, staged), "scan %d: staged and one-transaction stores differ", i+1)
		got, err := staged.LatestComplete("estate")
		require.NoError(t, err)
		require.Equal(t, sn.OpenPorts(), got.OpenPorts())
	}

	// A batch fails: the store is as it was.
	want := dumpRunsAndHeads(t, staged)
	latest, err := staged.LatestComplete("estate")
	require.NoError(t, err)
	boom := errors.New("disk full")
	n := 0
	staged.staged = func() error {
		if n++; n == 3 {
			return boom
		}
		return nil
	}
	err = staged.Commit(context.Background(), Commit{Snapshot: churned(at.Add(3*time.Hour), octets)})
	require.ErrorIs(t, err, boom)
	require.Equal(t, want, dumpRunsAndHeads(t, staged), "a failed staged commit must leave the store as it was")
	again, err := staged.LatestComplete("estate")
	require.NoError(t, err)
	require.Equal(t, latest.ID, again.ID)

	// A crash after some batches: the copy of the file taken then opens
	// to the store as it was before the commit.
	n = 0
	crash := filepath.Join(dir, "crash.db")
	staged.staged = func() error {
		if n++; n == 4 {
			copyFile(t, staged.Path(), crash)
		}
		return nil
	}
	require.NoError(t, staged.Commit(context.Background(), Commit{Snapshot: churned(at.Add(4*time.Hour), octets)}))
	crashed := open(t, crash, 100)
	require.Equal(t, want, dumpRunsAndHeads(t, crashed), "the crashed commit must be rolled back at open")
	// The rolled-back store goes on as the staged one did.
	sn := churned(at.Add(4*time.Hour), octets)
	require.NoError(t, crashed.Commit(context.Background(), Commit{Snapshot: sn}))
	require.Equal(t, dumpRunsAndHeads(t, staged), dumpRunsAndHeads(t, crashed))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.Create(to)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
}
