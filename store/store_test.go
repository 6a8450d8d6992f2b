package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/exposure-monitor/exposure/snapshot"
)

var t0 = time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)

func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "exposure.db")
	s, err := Open(path, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

// scan builds a complete snapshot of target at t0+min minutes from a
// compact description: "addr:port/service/version,...".
func scan(target string, min int, hosts map[string][]string) *snapshot.Snapshot {
	start := t0.Add(time.Duration(min) * time.Minute)
	sn := &snapshot.Snapshot{
		Target: target, ID: snapshot.NewID(target, start), StartedAt: start, FinishedAt: start.Add(3 * time.Second),
		Complete: true, Quality: snapshot.Quality{ProbesSent: 1000, Replies: 1000, Closed: 990},
		Hosts: []snapshot.Host{},
	}
	for addr, ports := range hosts {
		h := snapshot.Host{Address: addr, State: snapshot.HostUp, Ports: []snapshot.Port{}}
		for _, p := range ports {
			var num uint16
			var name, ver string
			parts := strings.Split(p, "/")
			fmt.Sscan(parts[0], &num)
			if len(parts) > 1 {
				name = parts[1]
			}
			if len(parts) > 2 {
				ver = parts[2]
			}
			pt := snapshot.Port{Port: num, Protocol: "tcp", State: snapshot.StateOpen}
			if name != "" {
				pt.Service = &snapshot.Service{Name: name, Product: name + "d", Version: ver, CPE: []string{"cpe:/a:x:" + name}}
			}
			h.Ports = append(h.Ports, pt)
		}
		sn.Hosts = append(sn.Hosts, h)
	}
	sn.Sort()
	return sn
}

func commit(t testing.TB, s *Store, sn *snapshot.Snapshot, changes ...snapshot.Change) {
	t.Helper()
	require.NoError(t, s.Commit(context.Background(), Commit{Snapshot: sn, Changes: changes}))
}

func TestRoundTripAndAt(t *testing.T) {
	s, _ := openTemp(t)
	steps := []*snapshot.Snapshot{
		scan("dmz", 0, map[string][]string{"198.18.0.2": {"22/ssh/9.2p1", "80/http/1.22"}, "198.18.0.3": {"443/https/2.4"}}),
		scan("dmz", 10, map[string][]string{"198.18.0.2": {"22/ssh/9.2p1", "80/http/1.22"}, "198.18.0.3": {"443/https/2.4"}}),
		// 22 version changes, 80 closes, 8080 opens, host .3 goes away.
		scan("dmz", 20, map[string][]string{"198.18.0.2": {"22/ssh/9.6p1", "8080/http/1.24"}}),
		// host .3 comes back, 80 reopens with no service.
		scan("dmz", 30, map[string][]string{"198.18.0.2": {"22/ssh/9.6p1", "80", "8080/http/1.24"}, "198.18.0.3": {"443/https/2.4"}}),
		scan("dmz", 40, map[string][]string{}),
	}
	steps[1].Hosts[0].Hostname = "mail.example.test"
	steps[2].Hosts[0].Hostname = "mail.example.test"
	// Unlisted counts with and without a hostname, changing and going.
	steps[0].Hosts[1].Unlisted = snapshot.Unlisted{TCPClosed: 998}
	steps[1].Hosts[0].Unlisted = snapshot.Unlisted{TCPClosed: 998}
	steps[2].Hosts[0].Unlisted = snapshot.Unlisted{TCPClosed: 996, UDPOpenFiltered: 3}
	other := scan("lab", 5, map[string][]string{"127.0.0.1": {"9917"}})
	for i, sn := range steps {
		commit(t, s, sn)
		if i == 0 {
			commit(t, s, other)
		}
	}
	for _, sn := range steps {
		got, err := s.Snapshot(sn.ID)
		require.NoError(t, err)
		require.Equal(t, sn, got, "snapshot %s", sn.ID)
		got, err = s.At("dmz", sn.StartedAt.Add(time.Minute))
		require.NoError(t, err)
		require.Equal(t, sn, got, "at %s", sn.StartedAt)
	}
	got, err := s.Latest("lab")
	require.NoError(t, err)
	require.Equal(t, other, got)
	got, err = s.LatestComplete("dmz")
	require.NoError(t, err)
	require.Equal(t, steps[4], got)

	_, err = s.At("dmz", t0.Add(-time.Second))
	require.ErrorIs(t, err, ErrNotFound)
	_, err = s.Latest("nope")
	require.ErrorIs(t, err, ErrNotFound)
	_, err = s.Snapshot("dmz/123")
	require.ErrorIs(t, err, ErrNotFound)
	_, err = s.Snapshot("garbage")
	require.ErrorIs(t, err, ErrNotFound)

	targets, err := s.Targets()
	require.NoError(t, err)
	require.Equal(t, []string{"dmz", "lab"}, targets)

	scans, err := s.Scans("dmz", 2)
	require.NoError(t, err)
	require.Len(t, scans, 2)
	require.Equal(t, steps[4].ID, scans[0].ID)
	require.Equal(t, steps[3].ID, scans[1].ID)
	require.Equal(t, 4, scans[1].OpenPorts)
	require.Equal(t, 2, scans[1].HostsUp)

	require.Error(t, s.Commit(context.Background(), Commit{Snapshot: steps[0]}), "duplicate scan")
}

func TestIncompleteAndOutOfOrderScansKeepHistory(t *testing.T) {
	s, _ := openTemp(t)
	full := scan("dmz", 0, map[string][]string{"198.18.0.2": {"22/ssh/9.2p1", "80/http/1"}})
	commit(t, s, full)

	partial := scan("dmz", 10, map[string][]string{"198.18.0.2": {"22/ssh/9.2p1"}})
	partial.Complete = false
	commit(t, s, partial)

	got, err := s.Latest("dmz")
	require.NoError(t, err)
	require.Equal(t, partial, got)
	got, err = s.LatestComplete("dmz")
	require.NoError(t, err)
	require.Equal(t, full, got, "an incomplete scan must not close port 80")
	got, err = s.At("dmz", partial.StartedAt)
	require.NoError(t, err)
	require.Equal(t, full, got)

	next := scan("dmz", 20, map[string][]string{"198.18.0.2": {"22/ssh/9.2p1", "80/http/1"}})
	commit(t, s, next)
	// A complete scan older than the head is kept, but does not rewrite runs.
	late := scan("dmz", 15, map[string][]string{"198.18.0.9": {"3389"}})
	late.ID = "custom-id-15"
	commit(t, s, late)
	got, err = s.Snapshot("custom-id-15")
	require.NoError(t, err)
	require.Equal(t, late, got)
	got, err = s.LatestComplete("dmz")
	require.NoError(t, err)
	require.Equal(t, next, got)
}

func TestChangesLogAndFirstSeen(t *testing.T) {
	s, _ := openTemp(t)
	a := scan("dmz", 0, map[string][]string{"198.18.0.2": {"22", "80"}})
	b := scan("dmz", 10, map[string][]string{"198.18.0.2": {"22", "80"}})
	c := scan("dmz", 20, map[string][]string{"198.18.0.2": {"22", "4444"}})
	commit(t, s, a)
	commit(t, s, b)
	commit(t, s, c,
		snapshot.Change{Kind: snapshot.PortClosed, Address: "198.18.0.2", Port: 80, Protocol: "tcp"},
		snapshot.Change{Kind: snapshot.PortOpened, Address: "198.18.0.2", Port: 4444, Protocol: "tcp"},
	)
	commit(t, s, scan("web", 25, nil), snapshot.Change{Kind: snapshot.ForbiddenOpen, Address: "198.18.1.1", Port: 23, Protocol: "tcp"})
	require.NoError(t, s.Commit(context.Background(), Commit{Changes: []snapshot.Change{
		{Kind: snapshot.HostDownKind, Target: "zzz", Address: "198.18.2.1", At: t0.Add(30 * time.Minute)},
	}}))

	all, err := s.Changes("", time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Len(t, all, 4)
	require.Equal(t, []snapshot.Kind{snapshot.PortClosed, snapshot.PortOpened, snapshot.ForbiddenOpen, snapshot.HostDownKind},
		[]snapshot.Kind{all[0].Kind, all[1].Kind, all[2].Kind, all[3].Kind})
	require.Equal(t, "dmz", all[0].Target)
	require.Equal(t, c.ID, all[0].Snapshot)
	require.Equal(t, c.StartedAt, all[0].At)
	require.Equal(t, a.StartedAt, all[0].FirstSeen, "a closure's first_seen is when the port opened")
	require.Equal(t, c.StartedAt, all[1].FirstSeen, "an opening's first_seen is now")

	dmz, err := s.Changes("dmz", t0.Add(20*time.Minute), t0.Add(21*time.Minute))
	require.NoError(t, err)
	require.Len(t, dmz, 2)
	none, err := s.Changes("dmz", t0.Add(21*time.Minute), time.Time{})
	require.NoError(t, err)
	require.Empty(t, none)

	// A limit keeps the oldest, across targets too.
	for n := 1; n <= 5; n++ {
		got, err := s.ChangesLimit("", time.Time{}, time.Time{}, n)
		require.NoError(t, err)
		require.Equal(t, all[:min(n, len(all))], got, "limit %d", n)
	}
	first, err := s.ChangesLimit("dmz", time.Time{}, time.Time{}, 1)
	require.NoError(t, err)
	require.Equal(t, all[:1], first)

	err = s.Commit(context.Background(), Commit{Changes: []snapshot.Change{{Kind: snapshot.HostUpKind, Target: "x"}}})
	require.Error(t, err, "a change without time or snapshot")
}

func TestDiffState(t *testing.T) {
	s, _ := openTemp(t)
	st, err := s.DiffState("dmz")
	require.NoError(t, err)
	require.Nil(t, st)
	require.NoError(t, s.Commit(context.Background(), Commit{Snapshot: scan("dmz", 0, nil), DiffState: []byte(`{"v":1}`)}))
	require.NoError(t, s.Commit(context.Background(), Commit{Target: "web", DiffState: []byte("x")}))
	st, err = s.DiffState("dmz")
	require.NoError(t, err)
	require.Equal(t, `{"v":1}`, string(st))
	st, err = s.DiffState("web")
	require.NoError(t, err)
	require.Equal(t, "x", string(st))
	require.Error(t, s.Commit(context.Background(), Commit{DiffState: []byte("x")}), "diff state without a target")
}

func TestOutbox(t *testing.T) {
	s, path := openTemp(t)
	e := func(recv, key string, created int, next int) OutboxEntry {
		return OutboxEntry{Receiver: recv, Key: key, Created: t0.Add(time.Duration(created) * time.Second),
			NextAttempt: t0.Add(time.Duration(next) * time.Second), Body: []byte(`{"k":"` + key + `"}`)}
	}
	require.NoError(t, s.Commit(context.Background(), Commit{
		Snapshot: scan("dmz", 0, nil),
		Outbox:   []OutboxEntry{e("am", "k2", 2, 0), e("am", "k1", 1, 0), e("hook", "k1", 1, 0)},
	}))
	dup := e("am", "k1", 9, 9)
	dup.Body = []byte("other")
	require.NoError(t, s.OutboxAdd(dup, e("am", "k3", 3, 0)))

	n, err := s.OutboxLen()
	require.NoError(t, err)
	require.Equal(t, 4, n)
	counts, err := s.OutboxReceivers()
	require.NoError(t, err)
	require.Equal(t, map[string]int{"am": 3, "hook": 1}, counts)

	got, err := s.OutboxPending("am", 0)
	require.NoError(t, err)
	require.Equal(t, []string{"k1", "k2", "k3"}, keys(got))
	require.Equal(t, `{"k":"k1"}`, string(got[0].Body), "a duplicate key keeps the first entry")

	retry := got[0]
	retry.Attempts, retry.NextAttempt = 1, t0.Add(time.Hour)
	require.NoError(t, s.OutboxRetry(retry))
	got, err = s.OutboxPending("am", 2)
	require.NoError(t, err)
	require.Equal(t, []string{"k2", "k3"}, keys(got))

	require.NoError(t, s.OutboxAck("am", "k2"))
	require.NoError(t, s.OutboxAck("am", "k2"), "acking twice is fine")
	require.ErrorIs(t, s.OutboxRetry(e("am", "k2", 2, 5)), ErrNotFound, "retry never recreates an acked entry")
	require.Error(t, s.OutboxAdd(OutboxEntry{Receiver: "am"}), "entry without key")

	// The outbox survives a restart.
	require.NoError(t, s.Close())
	s2, err := Open(path, Options{})
	require.NoError(t, err)
	defer s2.Close()
	got, err = s2.OutboxPending("am", 0)
	require.NoError(t, err)
	require.Equal(t, []string{"k3", "k1"}, keys(got))
	require.Equal(t, 1, got[1].Attempts)
	require.True(t, got[1].NextAttempt.Equal(t0.Add(time.Hour)))
	hook, err := s2.OutboxPending("hook", 0)
	require.NoError(t, err)
	require.Len(t, hook, 1)
}

func keys(es []OutboxEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Key)
	}
	return out
}

func TestSecondOpenerFailsFast(t *testing.T) {
	_, path := openTemp(t)
	start := time.Now()
	_, err := Open(path, Options{Timeout: 200 * time.Millisecond})
	require.ErrorIs(t, err, ErrLocked)
	require.Contains(t, err.Error(), "is locked by another process (timeout 200ms)")
	require.Less(t, time.Since(start), 5*time.Second)
	_, err = Open(path, Options{Timeout: 100 * time.Millisecond, ReadOnly: true})
	require.ErrorIs(t, err, ErrLocked)
}

func TestReadOnly(t *testing.T) {
	s, path := openTemp(t)
	commit(t, s, scan("dmz", 0, map[string][]string{"198.18.0.2": {"22"}}))
	require.NoError(t, s.Close())
	r1, err := Open(path, Options{ReadOnly: true})
	require.NoError(t, err)
	defer r1.Close()
	r2, err := Open(path, Options{ReadOnly: true})
	require.NoError(t, err, "readers share the file")
	defer r2.Close()
	got, err := r2.Latest("dmz")
	require.NoError(t, err)
	require.Equal(t, 1, got.OpenPorts())
	require.Error(t, r1.Commit(context.Background(), Commit{Snapshot: scan("dmz", 5, nil)}))

	_, err = Open(filepath.Join(t.TempDir(), "missing.db"), Options{ReadOnly: true})
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestDamagedFiles(t *testing.T) {
	good := func(t *testing.T) []byte {
		s, path := openTemp(t)
		for i := range 50 {
			commit(t, s, scan("dmz", i, map[string][]string{"198.18.0.2": {fmt.Sprint(1000 + i)}, "198.18.0.3": {"22/ssh/9"}}))
		}
		require.NoError(t, s.Close())
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Greater(t, len(data), 8*4096)
		return data
	}(t)
	garbage := make([]byte, 64*1024)
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	pagesGarbled := append([]byte(nil), good...)
	for i := 2 * 4096; i < len(pagesGarbled); i++ {
		pagesGarbled[i] = 0xA5
	}
	bothMetas := append([]byte(nil), good...)
	copy(bothMetas[16:80], garbage)
	copy(bothMetas[4096+16:4096+80], garbage)

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated to half", good[:len(good)/2], "needs"},
		{"truncated to one page", good[:4096], "needs"},
		{"truncated mid meta", good[:40], "only 40 bytes"},
		{"garbage", garbage, "bad magic"},
		{"text file", []byte("hello, this is not a database\n"), "only"},
		{"garbled pages", pagesGarbled, ""},
		{"both metas garbled", bothMetas, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.db")
			require.NoError(t, os.WriteFile(path, tc.data, 0o600))
			for _, ro := range []bool{false, true} {
				s, err := Open(path, Options{ReadOnly: ro})
				require.Error(t, err)
				require.Nil(t, s)
				require.ErrorIs(t, err, ErrCorrupt)
				require.Contains(t, err.Error(), path)
				require.Contains(t, err.Error(), tc.want)
			}
		})
	}
}

func TestSchemaVersions(t *testing.T) {
	s, path := openTemp(t)
	commit(t, s, scan("dmz", 0, map[string][]string{"198.18.0.2": {"22"}}))
	require.NoError(t, s.Close())

	// A newer program adds a step; the old data survives the migration.
	var ran int
	migs := append(migrations(), func(tx *bolt.Tx) error {
		ran++
		_, err := tx.CreateBucket([]byte("v2-extra"))
		return err
	})
	s2, err := openWith(path, Options{}, migs)
	require.NoError(t, err)
	require.Equal(t, 1, ran)
	got, err := s2.Latest("dmz")
	require.NoError(t, err)
	require.Equal(t, 1, got.OpenPorts())
	require.NoError(t, s2.Close())

	// Reopening at version 2 runs nothing.
	s2, err = openWith(path, Options{}, migs)
	require.NoError(t, err)
	require.Equal(t, 1, ran)
	require.NoError(t, s2.Close())

	// This program (version 1) refuses the version-2 file.
	_, err = Open(path, Options{})
	require.ErrorIs(t, err, ErrSchema)
	require.EqualError(t, err, fmt.Sprintf("store: database %s has schema version 2, newer than this exposure supports (1): unsupported schema version; upgrade exposure", path))
	_, err = Open(path, Options{ReadOnly: true})
	require.ErrorIs(t, err, ErrSchema)

	// A failing step leaves the file at its old version.
	s3path := filepath.Join(t.TempDir(), "m.db")
	s3, err := Open(s3path, Options{})
	require.NoError(t, err)
	require.NoError(t, s3.Close())
	bad := append(migrations(), func(*bolt.Tx) error { return errors.New("boom") })
	_, err = openWith(s3path, Options{}, bad)
	require.ErrorContains(t, err, "migrate schema 1 to 2: boom")
	s3, err = Open(s3path, Options{})
	require.NoError(t, err, "still version 1")
	require.NoError(t, s3.Close())
}

// TestPrune prunes in one batch per bucket (the default) and in batches of
// one and two keys, so every batch boundary is crossed.
func TestPrune(t *testing.T) {
	for _, batch := range []int{defaultPruneBatch, 1, 2} {
		t.Run(fmt.Sprint(batch), func(t *testing.T) { testPrune(t, batch) })
	}
}

func testPrune(t *testing.T, batch int) {
	s, _ := openTemp(t)
	s.pruneBatch = batch
	var scans []*snapshot.Snapshot
	for i := range 10 {
		ports := []string{"22/ssh/" + fmt.Sprint(i/3)} // version changes every 3 scans
		if i%2 == 0 {
			ports = append(ports, "8080")
		}
		sn := scan("dmz", i*10, map[string][]string{"198.18.0.2": ports})
		scans = append(scans, sn)
		commit(t, s, sn, snapshot.Change{Kind: snapshot.VersionChanged, Address: "198.18.0.2", Port: 22, Protocol: "tcp"})
	}
	partial := scan("dmz", 95, nil)
	partial.Complete = false
	commit(t, s, partial)
	require.NoError(t, s.Commit(context.Background(), Commit{Changes: []snapshot.Change{
		{Kind: snapshot.HostDownKind, Target: "orphan", Address: "198.18.9.9", At: t0},
		{Kind: snapshot.HostUpKind, Target: "orphan", Address: "198.18.9.9", At: t0.Add(time.Hour)},
	}}))
	sizeBefore := bucketKeys(t, s)

	cut := scans[6].StartedAt
	n, err := s.Prune(context.Background(), cut)
	require.NoError(t, err)
	require.Equal(t, 6, n)

	for i, sn := range scans {
		got, err := s.Snapshot(sn.ID)
		if i < 6 {
			require.ErrorIs(t, err, ErrNotFound)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, sn, got, "scan %d after prune", i)
	}
	changes, err := s.Changes("dmz", time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Len(t, changes, 4)
	require.Less(t, bucketKeys(t, s), sizeBefore)
	orphan, err := s.Changes("orphan", time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Len(t, orphan, 1, "changes of targets without scans are pruned too")
	all, err := s.Changes("", time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Len(t, all, 5)

	// Pruning everything keeps the latest complete scan.
	n, err = s.Prune(context.Background(), t0.Add(24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, 4, n) // scans 6, 7, 8 and the partial one
	got, err := s.LatestComplete("dmz")
	require.NoError(t, err)
	require.Equal(t, scans[9], got)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Prune(ctx, t0)
	require.ErrorIs(t, err, context.Canceled)
}

// bucketKeys sums the keys and history values of the run buckets.
func bucketKeys(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	require.NoError(t, s.view(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketScans, bucketHosts, bucketPorts, bucketChanges} {
			require.NoError(t, tx.Bucket(b).ForEach(func(_, v []byte) error {
				n += len(v)
				return nil
			}))
		}
		return nil
	}))
	return n
}

func TestCommitRejects(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	for name, sn := range map[string]*snapshot.Snapshot{
		"no target":     {ID: "x", StartedAt: t0},
		"nul target":    {Target: "a\x00b", ID: "x", StartedAt: t0},
		"no id":         {Target: "a", StartedAt: t0},
		"zero time":     {Target: "a", ID: "a/0"},
		"nul address":   {Target: "a", ID: "a/1", StartedAt: t0, Hosts: []snapshot.Host{{Address: "1\x002"}}},
		"empty address": {Target: "a", ID: "a/1", StartedAt: t0, Hosts: []snapshot.Host{{}}},
	} {
		require.Error(t, s.Commit(ctx, Commit{Snapshot: sn}), name)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, s.Commit(cctx, Commit{Snapshot: scan("a", 0, nil)}), context.Canceled)
	targets, err := s.Targets()
	require.NoError(t, err)
	require.Empty(t, targets)
}
