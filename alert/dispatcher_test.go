package alert

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// funcNotifier adapts a function; it records the keys it was given.
type funcNotifier struct {
	mu   sync.Mutex
	keys []string
	fn   func(e Entry, call int) (bool, error)
}

func (f *funcNotifier) Notify(ctx context.Context, entries ...Entry) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range entries {
		f.keys = append(f.keys, e.Key)
		if retry, err := f.fn(e, len(f.keys)); err != nil {
			return retry, err
		}
	}
	return false, nil
}

func (f *funcNotifier) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.keys...)
}

func entryAt(receiver, key string, created time.Time) Entry {
	return Entry{Receiver: receiver, Key: key, Created: created, NextAttempt: created, Body: []byte(`[]`)}
}

func TestDispatcherMetrics(t *testing.T) {
	ob := newMemOutbox(
		entryAt("a", "1", t0), entryAt("a", "2", t0.Add(time.Second)), entryAt("a", "3", t0.Add(2*time.Second)),
		entryAt("b", "1", t0), entryAt("orphan", "1", t0),
	)
	a := &funcNotifier{fn: func(e Entry, call int) (bool, error) {
		switch {
		case e.Key == "2" && call == 2:
			return true, errors.New("503")
		case e.Key == "3":
			return false, errors.New("400")
		}
		return false, nil
	}}
	b := &funcNotifier{fn: func(Entry, int) (bool, error) { return false, nil }}
	_, reg := startDispatcher(t, DispatcherOptions{Outbox: ob, Notifiers: map[string]Notifier{"a": a, "b": b}})
	require.Eventually(t, func() bool { n, _ := ob.OutboxLen(); return n == 1 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"1", "2", "2", "3"}, a.calls(), "in order, the failed one first again")

	const want = `
# HELP exposure_notifications_total Outbox entries handed to receivers, by receiver and result (delivered, failed: will be retried, dropped: refused for good).
# TYPE exposure_notifications_total counter
exposure_notifications_total{receiver="a",result="delivered"} 2
exposure_notifications_total{receiver="a",result="dropped"} 1
exposure_notifications_total{receiver="a",result="failed"} 1
exposure_notifications_total{receiver="b",result="delivered"} 1
exposure_notifications_total{receiver="b",result="dropped"} 0
exposure_notifications_total{receiver="b",result="failed"} 0
# HELP exposure_outbox_pending Notifications waiting in the outbox for delivery.
# TYPE exposure_outbox_pending gauge
exposure_outbox_pending 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "exposure_notifications_total", "exposure_outbox_pending"))

	// A store error at scrape time keeps the last good value.
	ob.mu.Lock()
	ob.lenErr = errors.New("bolt closed")
	ob.mu.Unlock()
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP exposure_outbox_pending Notifications waiting in the outbox for delivery.
# TYPE exposure_outbox_pending gauge
exposure_outbox_pending 1
`), "exposure_outbox_pending"))
}

func TestDispatcherRegistersOnGivenRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	o := DispatcherOptions{Outbox: newMemOutbox(), Registerer: reg}
	_, err := NewDispatcher(o)
	require.NoError(t, err)
	_, err = NewDispatcher(o)
	require.ErrorContains(t, err, "register metrics", "a second dispatcher on the same registry is an error, not a panic")
	_, err = NewDispatcher(DispatcherOptions{Registerer: reg})
	require.EqualError(t, err, "alert dispatcher: no outbox")
	_, err = NewDispatcher(DispatcherOptions{Outbox: newMemOutbox(), Registerer: prometheus.NewRegistry(), MinBackoff: time.Hour, MaxBackoff: time.Second})
	require.ErrorContains(t, err, "min backoff")
}

// TestDispatcherHeadOfLine: a later entry (a resolution) never overtakes an
// earlier one (the alert) that is being retried.
func TestDispatcherHeadOfLine(t *testing.T) {
	ob := newMemOutbox(entryAt("am", "b-second", t0.Add(time.Minute)), entryAt("am", "a-first", t0))
	n := &funcNotifier{fn: func(e Entry, call int) (bool, error) {
		if call <= 3 {
			return true, errors.New("connection refused")
		}
		return false, nil
	}}
	startDispatcher(t, DispatcherOptions{Outbox: ob, Notifiers: map[string]Notifier{"am": n}})
	require.Eventually(t, func() bool { n, _ := ob.OutboxLen(); return n == 0 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"a-first", "a-first", "a-first", "a-first", "b-second"}, n.calls())
	require.Equal(t, []string{"am/a-first", "am/b-second"}, ob.ackedKeys())
}

// TestDispatcherRecordsBackoff: attempts and the next attempt time go to the
// outbox, so a restart keeps backing off; a restarted dispatcher waits.
func TestDispatcherRecordsBackoff(t *testing.T) {
	now := time.Now()
	ob := newMemOutbox(entryAt("am", "k", now.Add(-time.Minute)))
	n := &funcNotifier{fn: func(Entry, int) (bool, error) { return true, errors.New("down") }}
	startDispatcher(t, DispatcherOptions{Outbox: ob, Notifiers: map[string]Notifier{"am": n},
		MinBackoff: time.Hour, MaxBackoff: 4 * time.Hour, PollInterval: 5 * time.Millisecond})
	require.Eventually(t, func() bool { e, _ := ob.get("am", "k"); return e.Attempts == 1 }, 10*time.Second, 5*time.Millisecond)
	e, _ := ob.get("am", "k")
	wait := e.NextAttempt.Sub(now)
	require.GreaterOrEqual(t, wait, 30*time.Minute)
	require.LessOrEqual(t, wait, time.Hour+time.Minute)
	time.Sleep(50 * time.Millisecond)
	require.Len(t, n.calls(), 1, "not retried before NextAttempt despite polling")
}

func TestDispatcherWake(t *testing.T) {
	ob := newMemOutbox()
	n := &funcNotifier{fn: func(Entry, int) (bool, error) { return false, nil }}
	d, _ := startDispatcher(t, DispatcherOptions{Outbox: ob, Notifiers: map[string]Notifier{"am": n}, PollInterval: time.Hour})
	// Wait for the worker's first pass over the empty outbox: from then on it
	// waits an hour, so only Wake can make it see the entry added below (a
	// sleep here let a worker slow to start find the entry without Wake).
	require.Eventually(t, func() bool { return ob.readCount() >= 1 }, 10*time.Second, time.Millisecond)
	ob.add(entryAt("am", "k", time.Now()))
	d.Wake()
	require.Eventually(t, func() bool { return len(n.calls()) == 1 }, 10*time.Second, 5*time.Millisecond)
}

// TestDispatcherStopKeepsEntry: cancelling during a send leaves the entry
// untouched and uncounted.
func TestDispatcherStopKeepsEntry(t *testing.T) {
	ob := newMemOutbox(entryAt("am", "k", t0))
	started := make(chan struct{})
	blocking := NotifierFunc(func(ctx context.Context, _ ...Entry) (bool, error) {
		close(started)
		<-ctx.Done()
		return true, ctx.Err()
	})
	reg := prometheus.NewRegistry()
	d, err := NewDispatcher(DispatcherOptions{Outbox: ob, Registerer: reg, Notifiers: map[string]Notifier{"am": blocking}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	<-started
	cancel()
	require.NoError(t, <-done)
	e, ok := ob.get("am", "k")
	require.True(t, ok)
	require.Zero(t, e.Attempts)
	require.Zero(t, testutil.ToFloat64(d.notifications.WithLabelValues("am", ResultFailed)))
}

func TestBackoff(t *testing.T) {
	lo, hi := time.Second, time.Minute
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: 32 * time.Second, 7: time.Minute, 100: time.Minute} {
		for range 50 {
			d := backoff(attempts, lo, hi)
			require.GreaterOrEqual(t, d, want/2, "attempt %d", attempts)
			require.LessOrEqual(t, d, want, "attempt %d", attempts)
		}
	}
}

func TestLogNotifier(t *testing.T) {
	logger, logs := newTestLogger()
	in := planInput(t0, nil, forbidden(3389))
	in.Receivers = []Receiver{{Name: "log", Type: ReceiverLog}}
	r1 := Plan(in)
	require.Len(t, r1.Entries, 1)
	l := NewLog(logger)
	retry, err := l.Notify(context.Background(), r1.Entries...)
	require.NoError(t, err)
	require.False(t, retry)
	require.Contains(t, logs.String(), `level=ERROR msg="exposure change" kind=forbidden_open severity=critical target=dmz address=198.18.0.2 port=3389`)

	in = planInput(t0.Add(time.Hour), r1.Firing)
	in.Receivers = []Receiver{{Name: "log", Type: ReceiverLog}}
	r2 := Plan(in)
	_, err = l.Notify(context.Background(), r2.Entries...)
	require.NoError(t, err)
	require.Contains(t, logs.String(), `level=INFO msg="exposure condition resolved" kind=forbidden_open`)

	_, err = l.Notify(context.Background(), Entry{Key: "bad", Body: []byte("{")})
	require.ErrorContains(t, err, "decode outbox entry bad")
}

func TestDispatcherSetNotifiers(t *testing.T) {
	ob := newMemOutbox(entryAt("old", "1", t0), entryAt("new", "1", t0))
	block := make(chan struct{})
	old := NotifierFunc(func(ctx context.Context, _ ...Entry) (bool, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return true, errors.New("interrupted")
	})
	next := &funcNotifier{fn: func(Entry, int) (bool, error) { return false, nil }}
	logs := &syncBuffer{}
	d, reg := startDispatcher(t, DispatcherOptions{Outbox: ob, Notifiers: map[string]Notifier{"old": old}, PollInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	require.Eventually(t, func() bool { return logs.count("receiver=new pending=1") == 1 }, 10*time.Second, 5*time.Millisecond,
		"an unconfigured receiver with queued entries is named at start")
	require.NoError(t, d.SetNotifiers(map[string]Notifier{"new": next}))
	require.Eventually(t, func() bool { return len(next.calls()) == 1 }, 10*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return logs.count("receiver=old pending=1") == 1 }, 10*time.Second, 5*time.Millisecond,
		"and so is the receiver the reload removed")
	require.Contains(t, logs.String(), "receiver is not configured")
	close(block)
	_, ok := ob.get("old", "1")
	require.True(t, ok, "the interrupted entry of the removed receiver stays queued")
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP exposure_outbox_pending Notifications waiting in the outbox for delivery.
# TYPE exposure_outbox_pending gauge
exposure_outbox_pending 1
`), "exposure_outbox_pending"))
	require.Error(t, d.SetNotifiers(map[string]Notifier{"": next}))
}
