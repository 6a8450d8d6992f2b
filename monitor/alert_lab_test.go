package monitor_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
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

const alertmanagerBin = "prometheus-alertmanager"

// forbiddenPort is the port the alerting lab tests forbid and open.
const forbiddenPort = 8089

// amAlert is the part of Alertmanager's GET /api/v2/alerts answer the
// tests look at.
type amAlert struct {
	Labels   map[string]string `json:"labels"`
	StartsAt time.Time         `json:"startsAt"`
	EndsAt   time.Time         `json:"endsAt"`
	Status   struct {
		State string `json:"state"`
	} `json:"status"`
}

// alertmanagerProc is a Debian Alertmanager on loopback, without
// clustering, with its own storage.
type alertmanagerProc struct {
	url  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func startAlertmanager(t *testing.T, addr string) *alertmanagerProc {
	t.Helper()
	bin, err := exec.LookPath(alertmanagerBin)
	require.NoError(t, err)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n"), 0o600))
	am := &alertmanagerProc{url: "http://" + addr, done: make(chan struct{})}
	am.log, err = os.Create(filepath.Join(dir, "alertmanager.log"))
	require.NoError(t, err)
	am.cmd = exec.Command(bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	am.cmd.Stdout, am.cmd.Stderr = am.log, am.log
	require.NoError(t, am.cmd.Start())
	go func() { _ = am.cmd.Wait(); close(am.done) }()
	t.Cleanup(func() {
		_ = am.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-am.done:
		case <-time.After(10 * time.Second):
			_ = am.cmd.Process.Kill()
			<-am.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(am.log.Name())
			t.Logf("alertmanager log:\n%s", tail(string(b), 4000))
		}
	})
	eventually(t, 30*time.Second, "alertmanager to be ready", func() bool {
		code, _ := httpGet(am.url + "/-/ready")
		return code == http.StatusOK
	})
	return am
}

// alerts returns the alerts named alertname that Alertmanager lists.
func (am *alertmanagerProc) alerts(t *testing.T, alertname string) []amAlert {
	t.Helper()
	code, body := httpGet(am.url + "/api/v2/alerts")
	require.Equal(t, http.StatusOK, code, body)
	var all []amAlert
	require.NoError(t, json.Unmarshal([]byte(body), &all))
	var out []amAlert
	for _, a := range all {
		if a.Labels["alertname"] == alertname {
			out = append(out, a)
		}
	}
	return out
}

// startDaemonProc runs bin as `exposure daemon` on cfg and db, listening
// on a fresh loopback port, and waits until it is ready. Unlike
// startLabDaemon it lets a test run the same binary on the same store
// again after killing it.
func startDaemonProc(t *testing.T, bin, cfg, db string) *labDaemon {
	t.Helper()
	addr := freePort(t)
	d := &labDaemon{bin: bin, cfg: cfg, db: db, url: "http://" + addr, exited: make(chan error, 1)}
	var err error
	d.log, err = os.CreateTemp(filepath.Dir(db), "daemon-*.log")
	require.NoError(t, err)
	d.cmd = exec.Command(bin, "daemon", "--config.file", cfg, "--storage.path", db, "--web.listen-address", addr)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	require.NoError(t, d.cmd.Start())
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(d.log.Name())
			t.Logf("daemon log %s:\n%s", filepath.Base(d.log.Name()), tail(string(b), 8000))
		}
	})
	eventually(t, 30*time.Second, "the daemon to be ready", func() bool {
		code, _ := httpGet(d.url + "/-/ready")
		return code == http.StatusOK
	})
	return d
}

// value is metric with a missing series read as 0.
func (d *labDaemon) value(t *testing.T, series string) float64 {
	t.Helper()
	v, _ := d.metric(t, series)
	return v
}

func alertLabConfig(addr, receivers string) string {
	return fmt.Sprintf(`global:
  run_at_start: true
  jitter: 0s
targets:
  - name: lab
    hosts: [%s]
    ports: "22,8080-8090"
    schedule: "@every 2s"
    reverse_dns: false
    service_detection: {enabled: false}
    labels: {env: lab, team: net}
    expect:
      never_open: [%d]
receivers:
%s`, addr, forbiddenPort, receivers)
}

func wantForbiddenLabels(addr string) map[string]string {
	return map[string]string{
		"alertname": "ExposureForbiddenPort", "target": "lab", "address": addr,
		"port": strconv.Itoa(forbiddenPort), "protocol": "tcp", "severity": "critical",
		"env": "lab", "team": "net",
	}
}

// TestLabAlertmanagerForbiddenPortDaemon runs the real binary against a
// real Alertmanager: opening a never_open port on a lab host makes
// ExposureForbiddenPort appear in GET /api/v2/alerts with the labels of
// DESIGN.md plus the target's, and closing the port resolves it.
func TestLabAlertmanagerForbiddenPortDaemon(t *testing.T) {
	t.Parallel()
	lab.RequireBinary(t, alertmanagerBin)
	l := lab.New(t)
	h := l.AddHost("fw")
	addr := h.Addr().String()
	am := startAlertmanager(t, freePort(t))

	dir := t.TempDir()
	bin := buildExposure(t, dir)
	cfg := filepath.Join(dir, "exposure.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(alertLabConfig(addr, fmt.Sprintf(`  - name: am
    alertmanager: {url: %q, timeout: 2s}
`, am.url))), 0o600))
	d := startDaemonProc(t, bin, cfg, filepath.Join(dir, "exposure.db"))

	eventually(t, 30*time.Second, "the baseline scan", func() bool {
		return d.value(t, `exposure_scans_total{result="success",target="lab"}`) >= 1
	})
	require.Empty(t, am.alerts(t, "ExposureForbiddenPort"), "nothing forbidden is open yet")

	h.Listen(forbiddenPort)
	opened := time.Now()
	var got []amAlert
	eventually(t, 30*time.Second, "ExposureForbiddenPort in Alertmanager", func() bool {
		got = am.alerts(t, "ExposureForbiddenPort")
		return len(got) > 0
	})
	t.Logf("ExposureForbiddenPort in Alertmanager %.1f s after the port opened (schedule 2 s)", time.Since(opened).Seconds())
	require.Len(t, got, 1)
	require.Equal(t, wantForbiddenLabels(addr), got[0].Labels)
	require.Equal(t, "active", got[0].Status.State)
	require.True(t, got[0].EndsAt.After(time.Now()), "endsAt %s is in the future while the port is open", got[0].EndsAt)
	require.Equal(t, 1.0, d.value(t, `exposure_changes_total{kind="forbidden_open",target="lab"}`))

	require.NoError(t, h.Close(forbiddenPort))
	closed := time.Now()
	eventually(t, 30*time.Second, "ExposureForbiddenPort to be resolved", func() bool {
		for _, a := range am.alerts(t, "ExposureForbiddenPort") {
			if a.EndsAt.After(time.Now()) {
				return false
			}
		}
		return true
	})
	t.Logf("ExposureForbiddenPort resolved %.1f s after the port closed", time.Since(closed).Seconds())
	require.Equal(t, 1.0, d.value(t, `exposure_changes_total{kind="port_closed",target="lab"}`))
	require.Zero(t, d.value(t, `exposure_notifications_total{receiver="am",result="dropped"}`))
	require.Positive(t, d.value(t, `exposure_notifications_total{receiver="am",result="delivered"}`))
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
	lab.RequireBinary(t, alertmanagerBin)
	l := lab.New(t)
	h := l.AddHost("fault")
	addr := h.Addr().String()
	amAddr := freePort(t) // Alertmanager is not running yet
	const secret = "fault-test-hmac-key"
	hook := newHookServer(t, secret)

	dir := t.TempDir()
	bin := buildExposure(t, dir)
	secretFile := filepath.Join(dir, "hook.secret")
	require.NoError(t, os.WriteFile(secretFile, []byte(secret+"\n"), 0o600))
	cfg := filepath.Join(dir, "exposure.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(alertLabConfig(addr, fmt.Sprintf(`  - name: am
    alertmanager: {url: "http://%s", timeout: 2s}
  - name: hook
    webhook: {url: %q, secret_file: %q, timeout: 2s}
`, amAddr, hook.URL+"/exposure", secretFile))), 0o600))
	db := filepath.Join(dir, "exposure.db")

	d := startDaemonProc(t, bin, cfg, db)
	eventually(t, 30*time.Second, "the baseline scan", func() bool {
		return d.value(t, `exposure_scans_total{result="success",target="lab"}`) >= 1
	})
	h.Listen(forbiddenPort)
	eventually(t, 30*time.Second, "the forbidden port committed and its delivery failing", func() bool {
		return d.value(t, `exposure_changes_total{kind="forbidden_open",target="lab"}`) == 1 &&
			d.value(t, "exposure_outbox_pending") > 0 &&
			d.value(t, `exposure_notifications_total{receiver="am",result="failed"}`) > 0 &&
			d.value(t, `exposure_notifications_total{receiver="hook",result="failed"}`) > 0
	})
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGKILL))
	err := <-d.exited
	require.Error(t, err, "killed")
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

	d = startDaemonProc(t, bin, cfg, db)
	am := startAlertmanager(t, amAddr)
	hook.setDown(false)
	var got []amAlert
	eventually(t, 45*time.Second, "ExposureForbiddenPort in Alertmanager after the restart", func() bool {
		got = am.alerts(t, "ExposureForbiddenPort")
		return len(got) > 0
	})
	t.Logf("alert in Alertmanager %.1f s after SIGKILL", time.Since(killed).Seconds())
	require.Len(t, got, 1)
	require.Equal(t, wantForbiddenLabels(addr), got[0].Labels)
	require.True(t, got[0].StartsAt.Before(killed), "startsAt %s: the alert keeps the start the killed daemon found", got[0].StartsAt)
	require.Len(t, am.alerts(t, "ExposurePortOpened"), 1)

	eventually(t, 30*time.Second, "the webhook to accept every entry queued before the kill", func() bool {
		_, accepted, _ := hook.counts()
		for _, k := range queuedHook {
			if accepted[k] == 0 {
				return false
			}
		}
		return true
	})
	eventually(t, 30*time.Second, "the outbox to drain", func() bool {
		return d.value(t, "exposure_outbox_pending") == 0
	})
	for _, r := range []string{"am", "hook"} {
		require.Zero(t, d.value(t, fmt.Sprintf(`exposure_notifications_total{receiver=%q,result="dropped"}`, r)), r)
	}

	// Stop the daemon cleanly and look in the store: nothing queued before
	// the kill is left.
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-d.exited:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30 s after SIGTERM")
	}
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
	require.Len(t, am.alerts(t, "ExposureForbiddenPort"), 1)
}
