package alert

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
)

// runDispatcher starts a dispatcher and returns it with a stop function
// that waits for it, standing in for a daemon that is started and stopped.
func runDispatcher(t *testing.T, o DispatcherOptions) (*Dispatcher, func()) {
	t.Helper()
	d, err := NewDispatcher(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		require.NoError(t, <-done)
	}
	t.Cleanup(stop)
	return d, stop
}

// TestLabAlertmanager delivers through the bbolt outbox to a real
// Alertmanager that is down at first, across a restart of the daemon side
// (dispatcher stopped, store closed and reopened): the queued
// ExposureForbiddenPort arrives once Alertmanager starts and shows up with
// the right labels, and the resolution of the next scan makes it disappear
// from the active alerts. A webhook receiver that was failing too gets each
// entry exactly once per idempotency key.
func TestLabAlertmanager(t *testing.T) {
	lab.RequireBinary(t, lab.AlertmanagerBin)

	amAddr := lab.FreeAddr(t)
	base := "http://" + amAddr
	dbPath := filepath.Join(t.TempDir(), "exposure.db")
	am, err := NewAlertmanager(AlertmanagerOptions{URLs: []string{base}, Timeout: 5 * time.Second})
	require.NoError(t, err)
	hookSrv := newScriptedServer(t, 503, 503, 503, 200)
	hook, err := NewWebhook(WebhookOptions{URL: hookSrv.URL + "/hook", SecretFile: writeSecret(t, "lab-hmac-key")})
	require.NoError(t, err)
	receivers := []Receiver{{Name: "am", Type: ReceiverAlertmanager}, {Name: "hook", Type: ReceiverWebhook}}
	logger, logs := newTestLogger()
	start := func() (*store.Store, *Dispatcher, func()) {
		st, err := store.Open(dbPath, store.Options{Timeout: time.Second})
		require.NoError(t, err)
		d, stop := runDispatcher(t, DispatcherOptions{Outbox: st, Registerer: prometheus.NewRegistry(), Logger: logger,
			Notifiers:  map[string]Notifier{"am": am, "hook": hook},
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, PollInterval: time.Second})
		return st, d, func() { stop(); require.NoError(t, st.Close()) }
	}
	scan := func(st *store.Store, d *Dispatcher, now time.Time, prev []snapshot.Change, conds ...snapshot.Change) PlanResult {
		t.Helper()
		in := planInput(now, prev, conds...)
		in.Receivers = receivers
		res := Plan(in)
		require.Len(t, res.Entries, 2)
		require.NoError(t, st.Commit(context.Background(), store.Commit{Outbox: res.Entries}))
		d.Wake()
		return res
	}

	// Scan 1 while Alertmanager is down: the entry waits in the outbox.
	st, d, stop := start()
	t1 := time.Now().UTC().Truncate(time.Millisecond)
	r1 := scan(st, d, t1, nil, forbidden(3389))
	require.Eventually(t, func() bool { return logs.count("notification failed") >= 2 }, 30*time.Second, 10*time.Millisecond)
	n, err := st.OutboxLen()
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Eventually(t, func() bool {
		e, err := st.OutboxPending("am", 0)
		return err == nil && len(e) == 1 && e[0].Attempts > 0
	}, 10*time.Second, 10*time.Millisecond, "the failed attempt is recorded in the store")

	// The daemon restarts; Alertmanager comes up.
	stop()
	st, d, stop = start()
	defer stop()
	amServer := lab.StartAlertmanager(t, amAddr)
	require.Eventually(t, func() bool { n, _ := st.OutboxLen(); return n == 0 }, 30*time.Second, 20*time.Millisecond)
	alerts := amServer.Alerts(t, "")
	require.Len(t, alerts, 1)
	require.Equal(t, map[string]string{
		"alertname": "ExposureForbiddenPort", "target": "dmz", "address": "198.18.0.2", "port": "3389",
		"protocol": "tcp", "severity": "critical", "env": "prod",
	}, alerts[0].Labels)
	require.Equal(t, "active", alerts[0].Status.State)
	require.True(t, alerts[0].StartsAt.Equal(t1), "startsAt %s, want %s", alerts[0].StartsAt, t1)
	require.True(t, alerts[0].EndsAt.After(time.Now()))
	require.Equal(t, 1.0, counter(t, d, "am", ResultDelivered))

	// Scan 2: the port is closed; the resolution is sent and the alert
	// leaves the active list.
	scan(st, d, time.Now().UTC(), r1.Firing)
	require.Eventually(t, func() bool { n, _ := st.OutboxLen(); return n == 0 }, 30*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return len(amServer.Alerts(t, "")) == 0 }, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, 2.0, counter(t, d, "am", ResultDelivered))
	require.Zero(t, counter(t, d, "am", ResultDropped))

	// The webhook saw both entries, each accepted exactly once.
	accepted := map[string]int{}
	reqs := hookSrv.got()
	for i, r := range reqs {
		require.True(t, VerifySignature(r.body, "lab-hmac-key", r.header.Get(SignatureHeader)))
		if i >= 3 { // the server answers 503 three times, then 200
			accepted[r.header.Get(IdempotencyHeader)]++
		}
	}
	require.Len(t, accepted, 2, "firing and resolution")
	require.Equal(t, 1, accepted[r1.Entries[1].Key])
	for k, n := range accepted {
		require.Equal(t, 1, n, "key %s", k)
	}
}
