package store

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rssFileKB is the process's file-backed resident memory (Linux).
func rssFileKB(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "RssFile:" {
			n, err := strconv.Atoi(f[1])
			require.NoError(t, err)
			return n
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// TestReleaseCache: reading a large target maps its pages into the
// process; ReleaseCache drops them from its resident set, and the store
// still reads the same afterwards.
func TestReleaseCache(t *testing.T) {
	s, _ := openTemp(t)
	at := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	for i := range 20 {
		require.NoError(t, s.Commit(context.Background(), Commit{Snapshot: bigTarget(at.Add(time.Duration(i) * time.Hour))}))
	}
	size, err := s.Size()
	require.NoError(t, err)
	require.NoError(t, s.Check()) // touches every page
	before := rssFileKB(t)
	require.NoError(t, s.ReleaseCache())
	after := rssFileKB(t)
	t.Logf("database %d KB; file-backed RSS %d -> %d KB", size/1024, before, after)
	require.Less(t, after, before-int(size/1024)/2, "the database's pages left the resident set")
	got, err := s.LatestComplete("dc")
	require.NoError(t, err)
	require.Equal(t, 1000, got.OpenPorts())
}

// TestCommitWalkReleasesPages: an unchanged re-scan of an estate reads
// every key of the target through bbolt's mapping; the walk lets go of the
// pages behind it, so the file does not come into the resident set.
func TestCommitWalkReleasesPages(t *testing.T) {
	s, _ := openTemp(t)
	at := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	require.NoError(t, s.Commit(context.Background(), Commit{Snapshot: estate(at, 256)}))
	size, err := s.Size()
	require.NoError(t, err)
	next := estate(at.Add(time.Hour), 256)
	require.NoError(t, s.ReleaseCache())
	before := rssFileKB(t)
	done := make(chan error, 1)
	peak := before
	go func() { done <- s.Commit(context.Background(), Commit{Snapshot: next}) }()
	for running := true; running; {
		select {
		case err := <-done:
			require.NoError(t, err)
			running = false
		case <-time.After(time.Millisecond):
		}
		peak = max(peak, rssFileKB(t))
	}
	t.Logf("database %d KB; file-backed RSS %d KB before the re-scan's commit, at most %d KB during it", size/1024, before, peak)
	require.Less(t, peak-before, int(size/1024)/3, "the commit's walk kept the database's pages resident")
}
