package monitor_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/alert"
	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/store"
)

// forbiddenPort is the port the alerting lab tests forbid and open.
const forbiddenPort = 8089

// alertLabConfig is daemonConfig on a 2 s schedule without reverse DNS
// and service detection, with the target labels env and team.
func alertLabConfig(h *lab.Host, receivers string) string {
	return daemonConfig(h, "@every 2s", `    reverse_dns: false
    service_detection: {enabled: false}
    labels: {env: lab, team: net}
`, receivers)
}

func wantForbiddenLabels(addr string) map[string]string {
	return map[string]string{
		"alertname": "ExposureForbiddenPort", "target": "lab", "address": addr,
		"port": strconv.Itoa(forbiddenPort), "protocol": "tcp", "severity": "critical",
		"env": "lab", "team": "net",
	}
}

// awaitAlerts waits up to timeout for Alertmanager to list alerts named
// name and returns them.
func awaitAlerts(t *testing.T, am *lab.Alertmanager, name string, timeout time.Duration) []lab.Alert {
	t.Helper()
	var got []lab.Alert
	lab.Eventually(t, timeout, name+" in Alertmanager", func() bool {
		got = am.Alerts(t, name)
		return len(got) > 0
	})
	return got
}

// TestLabAlertmanagerForbiddenPortDaemon runs the real binary against a
// real Alertmanager: opening a never_open port on a lab host makes
// ExposureForbiddenPort appear in GET /api/v2/alerts with the labels of
// docs/architecture.md plus the target's, and closing the port resolves it.
func TestLabAlertmanagerForbiddenPortDaemon(t *testing.T) {
	t.Parallel()
	lab.RequireBinary(t, lab.AlertmanagerBin)
	h, addr := labHost(t, "fw")
	am := lab.StartAlertmanager(t, lab.FreeAddr(t))

	dir := t.TempDir()
	bin := lab.BuildExposure(t)
	cfg := writeConfig(t, dir, alertLabConfig(h, fmt.Sprintf(`  - name: am
    alertmanager: {url: %q, timeout: 2s}
`, am.URL)))
	d := lab.StartExposureDaemon(t, lab.ExposureOptions{Bin: bin, Config: cfg, DB: filepath.Join(dir, "exposure.db")})

	awaitScan(t, d)
	require.Empty(t, am.Alerts(t, "ExposureForbiddenPort"), "nothing forbidden is open yet")

	h.Listen(forbiddenPort)
	opened := time.Now()
	got := awaitAlerts(t, am, "ExposureForbiddenPort", 30*time.Second)
	t.Logf("ExposureForbiddenPort in Alertmanager %.1f s after the port opened (schedule 2 s)", time.Since(opened).Seconds())
	require.Len(t, got, 1)
	require.Equal(t, wantForbiddenLabels(addr), got[0].Labels)
	require.Equal(t, "active", got[0].Status.State)
	require.True(t, got[0].EndsAt.After(time.Now()), "endsAt %s is in the future while the port is open", got[0].EndsAt)
	require.Equal(t, 1.0, d.Value(t, `exposure_changes_total{kind="forbidden_open",target="lab"}`))

	require.NoError(t, h.Close(forbiddenPort))
	closed := time.Now()
	lab.Eventually(t, 30*time.Second, "ExposureForbiddenPort to be resolved", func() bool {
		for _, a := range am.Alerts(t, "ExposureForbiddenPort") {
			if a.EndsAt.After(time.Now()) {
				return false
			}
		}
		return true
	})
	t.Logf("ExposureForbiddenPort resolved %.1f s after the port closed", time.Since(closed).Seconds())
	require.Equal(t, 1.0, d.Value(t, `exposure_changes_total{kind="port_closed",target="lab"}`))
	require.Zero(t, d.Value(t, `exposure_notifications_total{receiver="am",result="dropped"}`))
	require.Positive(t, d.Value(t, `exposure_notifications_total{receiver="am",result="delivered"}`))
}

// hookServer is a webhook receiver that answers 503 while down and counts
// the deliveries it accepted per Idempotency-Key, checking every signature.
type hookServer struct {
	*httptest.Server
	secret string

	mu       sync.Mutex
	down     bool
	refused  map[string]int // key -> 503 answers
	accepted map[string]int // key -> 200 answers
	badSig   int
}

func newHookServer(t *testing.T, secret string) *hookServer {
	t.Helper()
	s := &hookServer{secret: secret, down: true, refused: map[string]int{}, accepted: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		key := r.Header.Get(alert.IdempotencyHeader)
		s.mu.Lock()
		defer s.mu.Unlock()
		if !alert.VerifySignature(body, alert.Secret(s.secret), r.Header.Get(alert.SignatureHeader)) || key == "" {
			s.badSig++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if s.down {
			s.refused[key]++
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		s.accepted[key]++
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *hookServer) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *hookServer) counts() (refused, accepted map[string]int, badSig int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	refused, accepted = map[string]int{}, map[string]int{}
	for k, v := range s.refused {
		refused[k] = v
	}
	for k, v := range s.accepted {
		accepted[k] = v
	}
	return refused, accepted, s.badSig
}

// outboxKeys opens the store of a stopped daemon and lists the keys
// waiting for receiver.
func outboxKeys(t *testing.T, db, receiver string) []string {
	t.Helper()
	st, err := store.Open(db, store.Options{Timeout: 5 * time.Second, ReadOnly: true})
	require.NoError(t, err)
	defer func() { require.NoError(t, st.Close()) }()
	es, err := st.OutboxPending(receiver, 0)
	require.NoError(t, err)
	keys := make([]string, 0, len(es))
	for _, e := range es {
		keys = append(keys, e.Key)
	}
	return keys
}

// TestLabAlertDeliverySurvivesSIGKILL is the fault test: with Alertmanager
// stopped and the webhook failing, a forbidden port opens on a lab host;
// once the scan is committed and delivery has failed, the daemon is killed
// with SIGKILL. The queued entries are in the store. The daemon restarts,
// Alertmanager starts on the same port and the webhook recovers: the
// alert arrives, every entry queued before the kill leaves the outbox, the
// webhook accepts each Idempotency-Key exactly once with a valid
// signature, and Alertmanager holds the alert once.
func TestLabAlertDeliverySurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	lab.RequireBinary(t, lab.AlertmanagerBin)
	h, addr := labHost(t, "fault")
	amAddr := lab.FreeAddr(t) // Alertmanager is not running yet
	const secret = "fault-test-hmac-key"
	hook := newHookServer(t, secret)

	dir := t.TempDir()
	bin := lab.BuildExposure(t)
	secretFile := filepath.Join(dir, "hook.secret")
	require.NoError(t, os.WriteFile(secretFile, []byte(secret+"\n"), 0o600))
	cfg := writeConfig(t, dir, alertLabConfig(h, fmt.Sprintf(`  - name: am
    alertmanager: {url: "http://%s", timeout: 2s}
  - name: hook
    webhook: {url: %q, secret_file: %q, timeout: 2s}
`, amAddr, hook.URL+"/exposure", secretFile)))
	db := filepath.Join(dir, "exposure.db")

	d := lab.StartExposureDaemon(t, lab.ExposureOptions{Bin: bin, Config: cfg, DB: db})
	awaitScan(t, d)
	h.Listen(forbiddenPort)
	lab.Eventually(t, 30*time.Second, "the forbidden port committed and its delivery failing", func() bool {
		return d.Value(t, `exposure_changes_total{kind="forbidden_open",target="lab"}`) == 1 &&
			d.Value(t, "exposure_outbox_pending") > 0 &&
			d.Value(t, `exposure_notifications_total{receiver="am",result="failed"}`) > 0 &&
			d.Value(t, `exposure_notifications_total{receiver="hook",result="failed"}`) > 0
	})
	require.Error(t, d.Stop(t, syscall.SIGKILL, 30*time.Second), "killed")
	killed := time.Now()

	// What the killed daemon left queued.
	queuedAM, queuedHook := outboxKeys(t, db, "am"), outboxKeys(t, db, "hook")
	require.NotEmpty(t, queuedAM)
	require.NotEmpty(t, queuedHook)
	refused, accepted, _ := hook.counts()
	require.Empty(t, accepted)
	for _, k := range queuedHook {
		require.Positive(t, refused[k], "hook entry %s was tried before the kill", k)
	}
	t.Logf("queued at SIGKILL: %d for am, %d for hook", len(queuedAM), len(queuedHook))

	d = lab.StartExposureDaemon(t, lab.ExposureOptions{Bin: bin, Config: cfg, DB: db})
	am := lab.StartAlertmanager(t, amAddr)
	hook.setDown(false)
	got := awaitAlerts(t, am, "ExposureForbiddenPort", 45*time.Second)
	t.Logf("alert in Alertmanager %.1f s after SIGKILL", time.Since(killed).Seconds())
	require.Len(t, got, 1)
	require.Equal(t, wantForbiddenLabels(addr), got[0].Labels)
	require.True(t, got[0].StartsAt.Before(killed), "startsAt %s: the alert keeps the start the killed daemon found", got[0].StartsAt)
	require.Len(t, am.Alerts(t, "ExposurePortOpened"), 1)

	lab.Eventually(t, 30*time.Second, "the webhook to accept every entry queued before the kill", func() bool {
		_, accepted, _ := hook.counts()
		for _, k := range queuedHook {
			if accepted[k] == 0 {
				return false
			}
		}
		return true
	})
	lab.Eventually(t, 30*time.Second, "the outbox to drain", func() bool {
		return d.Value(t, "exposure_outbox_pending") == 0
	})
	for _, r := range []string{"am", "hook"} {
		require.Zero(t, d.Value(t, fmt.Sprintf(`exposure_notifications_total{receiver=%q,result="dropped"}`, r)), r)
	}

	// Stop the daemon cleanly and look in the store: nothing queued before
	// the kill is left.
	require.NoError(t, d.Stop(t, syscall.SIGTERM, 30*time.Second))
	for r, queued := range map[string][]string{"am": queuedAM, "hook": queuedHook} {
		left := map[string]bool{}
		for _, k := range outboxKeys(t, db, r) {
			left[k] = true
		}
		for _, k := range queued {
			require.False(t, left[k], "%s entry %s queued before the kill is still pending", r, k)
		}
	}
	_, accepted, badSig := hook.counts()
	require.Zero(t, badSig, "every webhook request carries a valid signature")
	for k, n := range accepted {
		require.Equal(t, 1, n, "webhook key %s accepted %d times", k, n)
	}
	require.Len(t, am.Alerts(t, "ExposureForbiddenPort"), 1)
}
