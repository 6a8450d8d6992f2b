package alert

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
)

// TestOutboxThroughStore runs the whole path on the real bbolt store: the
// entries are committed with the scan, survive a restart, are retried while
// the receiver fails and deleted once it accepts, exactly once per key.
func TestOutboxThroughStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exposure.db")
	st, err := store.Open(path, store.Options{Timeout: time.Second})
	require.NoError(t, err)

	now := time.Now().UTC().Truncate(time.Second)
	snap := &snapshot.Snapshot{Target: "dmz", ID: snapshot.NewID("dmz", now), StartedAt: now, FinishedAt: now, Complete: true,
		Hosts: []snapshot.Host{{Address: "198.18.0.2", State: snapshot.HostUp, Ports: []snapshot.Port{{Port: 3389, Protocol: "tcp", State: snapshot.StateOpen}}}}}
	in := planInput(now, nil, forbidden(3389))
	in.SnapshotID = snap.ID
	in.Snapshot = snap
	plan := Plan(in)
	require.Len(t, plan.Entries, 2)
	require.NoError(t, st.Commit(context.Background(), store.Commit{Snapshot: snap, Outbox: plan.Entries}))
	// Planning and committing the same scan again (a crash between commit
	// and the daemon noticing) adds nothing.
	require.NoError(t, st.OutboxAdd(Plan(in).Entries...))
	n, err := st.OutboxLen()
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.NoError(t, st.Close())

	// Restart.
	st, err = store.Open(path, store.Options{Timeout: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })

	am := newScriptedServer(t, 503, 503, 200)
	hook := newScriptedServer(t, 500, 200)
	amN, err := NewAlertmanager(AlertmanagerOptions{URLs: []string{am.URL}})
	require.NoError(t, err)
	hookN, err := NewWebhook(WebhookOptions{URL: hook.URL, SecretFile: writeSecret(t, "k3y-for-hmac")})
	require.NoError(t, err)
	startDispatcher(t, DispatcherOptions{Outbox: st, Notifiers: map[string]Notifier{"am": amN, "hook": hookN}})
	require.Eventually(t, func() bool { n, _ := st.OutboxLen(); return n == 0 }, 10*time.Second, 5*time.Millisecond)
	time.Sleep(30 * time.Millisecond)

	require.Len(t, am.got(), 3)
	hreqs := hook.got()
	require.Len(t, hreqs, 2)
	require.Equal(t, hreqs[0].header.Get(IdempotencyHeader), hreqs[1].header.Get(IdempotencyHeader))
	require.Equal(t, plan.Entries[1].Key, hreqs[1].header.Get(IdempotencyHeader))
	require.True(t, VerifySignature(hreqs[1].body, "k3y-for-hmac", hreqs[1].header.Get(SignatureHeader)))
}
