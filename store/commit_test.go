package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/snapshot"
)

// A scan's snapshot, changes, outbox entries and diff state are written in
// one transaction: when any part fails, none of it is stored. Were the
// outbox written in a transaction of its own, a crash between the two would
// lose the alerts of stored changes, or alert on changes never stored.
func TestCommitIsAtomic(t *testing.T) {
	entry := func(key string) OutboxEntry {
		return OutboxEntry{Receiver: "am", Key: key, Created: t0, Body: []byte(`{}`)}
	}
	tests := []struct {
		name string
		// stored is committed before; c must fail on top of it.
		stored *snapshot.Snapshot
		c      Commit
	}{
		{
			// bbolt refuses a key over bolt.MaxKeySize inside the
			// transaction, after the snapshot and changes were put.
			name: "outbox entry fails",
			c: Commit{
				Snapshot:  scan("dmz", 1, map[string][]string{"198.18.0.2": {"22/ssh/9.2"}}),
				Changes:   []snapshot.Change{{Kind: snapshot.PortOpened, Address: "198.18.0.2", Port: 22, Protocol: "tcp"}},
				Outbox:    []OutboxEntry{entry("ok"), entry(strings.Repeat("k", 40000))},
				DiffState: []byte(`{"after":1}`),
			},
		},
		{
			// The same scan twice: the snapshot fails, after nothing else.
			name:   "snapshot fails",
			stored: scan("dmz", 1, nil),
			c: Commit{
				Snapshot:  scan("dmz", 1, map[string][]string{"198.18.0.2": {"22/ssh/9.2"}}),
				Changes:   []snapshot.Change{{Kind: snapshot.PortOpened, Address: "198.18.0.2", Port: 22, Protocol: "tcp"}},
				Outbox:    []OutboxEntry{entry("ok")},
				DiffState: []byte(`{"after":1}`),
			},
		},
		{
			// A change without a usable target fails inside the transaction.
			name: "change fails",
			c: Commit{
				Target:    "dmz",
				Changes:   []snapshot.Change{{Kind: snapshot.PortOpened, Target: "d\x00mz", At: t0, Port: 22, Protocol: "tcp"}},
				Outbox:    []OutboxEntry{entry("ok")},
				DiffState: []byte(`{"after":1}`),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			ctx := context.Background()
			var before int
			if tt.stored != nil {
				commit(t, s, tt.stored)
				scans, err := s.Scans("dmz", 0)
				require.NoError(t, err)
				before = len(scans)
			}
			require.Error(t, s.Commit(ctx, tt.c))

			n, err := s.OutboxLen()
			require.NoError(t, err)
			require.Zero(t, n, "no outbox entry of a failed commit")
			changes, err := s.Changes("", time.Time{}, time.Time{})
			require.NoError(t, err)
			require.Empty(t, changes, "no change of a failed commit")
			state, err := s.DiffState("dmz")
			require.NoError(t, err)
			require.Nil(t, state, "no diff state of a failed commit")
			scans, err := s.Scans("dmz", 0)
			require.NoError(t, err)
			require.Len(t, scans, before, "no snapshot of a failed commit")
		})
	}

	// The same commit without the failing part stores all of it.
	s, _ := openTemp(t)
	c := tests[0].c
	c.Outbox = c.Outbox[:1]
	require.NoError(t, s.Commit(context.Background(), c))
	n, err := s.OutboxLen()
	require.NoError(t, err)
	require.Equal(t, 1, n)
	changes, err := s.Changes("dmz", time.Time{}, time.Time{})
	require.NoError(t, err)
	require.Len(t, changes, 1)
	state, err := s.DiffState("dmz")
	require.NoError(t, err)
	require.JSONEq(t, `{"after":1}`, string(state))
}
