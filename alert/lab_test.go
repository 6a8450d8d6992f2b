package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/snapshot"
	"github.com/exposure-monitor/exposure/store"
)

const alertmanagerBin = "prometheus-alertmanager"

// gettableAlert is the part of Alertmanager's GET /api/v2/alerts answer the
// test looks at.
type gettableAlert struct {
	Labels   map[string]string `json:"labels"`
	StartsAt time.Time         `json:"startsAt"`
	EndsAt   time.Time         `json:"endsAt"`
	Status   struct {
		State string `json:"state"`
	} `json:"status"`
}

// freeLoopbackPort returns a port nobody listens on right now.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// startAlertmanager runs the Debian Alertmanager on loopback with its own
// storage, without clustering, until the test ends.
func startAlertmanager(t *testing.T, port int) {
	t.Helper()
	bin, err := exec.LookPath(alertmanagerBin)
	require.NoError(t, err)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n"), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+cfg,
		"--storage.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
		"--cluster.listen-address=",
		"--log.level=warn",
	)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", out.String())
		}
	})
	ready := fmt.Sprintf("http://127.0.0.1:%d/-/ready", port)
	require.Eventually(t, func() bool {
		resp, err := http.Get(ready)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "alertmanager did not become ready: %s", out)
}

func getAlerts(t *testing.T, base string) []gettableAlert {
	t.Helper()
	resp, err := http.Get(base + "/api/v2/alerts")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var alerts []gettableAlert
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&alerts))
	return alerts
}

// TestLabAlertmanager delivers through the bbolt outbox to a real
// Alertmanager that is down at first: the queued ExposureForbiddenPort
// arrives once it starts, shows up with the right labels, and the
// resolution of the next scan makes it disappear from the active alerts.
func TestLabAlertmanager(t *testing.T) {
	lab.RequireBinary(t, alertmanagerBin)

	port := freeLoopbackPort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	st, err := store.Open(filepath.Join(t.TempDir(), "exposure.db"), store.Options{Timeout: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	am, err := NewAlertmanager(AlertmanagerOptions{URLs: []string{base}, Timeout: 5 * time.Second})
	require.NoError(t, err)
	logger, logs := newTestLogger()
	d, _ := startDispatcher(t, DispatcherOptions{Outbox: st, Notifiers: map[string]Notifier{"am": am}, Logger: logger,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, PollInterval: time.Second})

	commit := func(in PlanInput) PlanResult {
		t.Helper()
		res := Plan(in)
		require.Len(t, res.Entries, 1)
		require.NoError(t, st.Commit(context.Background(), store.Commit{Outbox: res.Entries}))
		d.Wake()
		return res
	}
	scan := func(now time.Time, prev []snapshot.Change, conds ...snapshot.Change) PlanInput {
		in := planInput(now, prev, conds...)
		in.Receivers = []Receiver{{Name: "am", Type: ReceiverAlertmanager}}
		return in
	}

	// Scan 1 while Alertmanager is down: the entry waits in the outbox.
	t1 := time.Now().UTC().Truncate(time.Millisecond)
	r1 := commit(scan(t1, nil, forbidden(3389)))
	require.Eventually(t, func() bool { return logs.count("notification failed") > 0 }, 30*time.Second, 10*time.Millisecond)
	n, err := st.OutboxLen()
	require.NoError(t, err)
	require.Equal(t, 1, n)

	startAlertmanager(t, port)
	require.Eventually(t, func() bool { n, _ := st.OutboxLen(); return n == 0 }, 30*time.Second, 20*time.Millisecond)
	alerts := getAlerts(t, base)
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
	commit(scan(time.Now().UTC(), r1.Firing))
	require.Eventually(t, func() bool { n, _ := st.OutboxLen(); return n == 0 }, 30*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return len(getAlerts(t, base)) == 0 }, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, 2.0, counter(t, d, "am", ResultDelivered))
	require.Zero(t, counter(t, d, "am", ResultDropped))
}
