package lab

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseMetric(t *testing.T) {
	const body = `# HELP exposure_scans_total Scans.
# TYPE exposure_scans_total counter
exposure_scans_total{result="success",target="lab"} 3
exposure_scans_total{result="failed",target="lab"} 0
exposure_port_open{address="198.18.0.2",port="8083",protocol="tcp",target="lab"} 1
exposure_outbox_pending 2.5
exposure_bad{x="y"} NaNa
`
	for _, tc := range []struct {
		series string
		want   float64
		ok     bool
		err    bool
	}{
		{`exposure_scans_total{result="success",target="lab"}`, 3, true, false},
		{`exposure_scans_total{result="failed",target="lab"}`, 0, true, false},
		{"exposure_outbox_pending", 2.5, true, false},
		{`exposure_port_open{address="198.18.0.2",port="8083",protocol="tcp",`, 1, true, false},
		{`exposure_port_open{address="198.18.0.2",port="8083"`, 0, false, false}, // a prefix only with a trailing comma
		{"exposure_scans_total", 0, false, false},
		{"exposure_missing", 0, false, false},
		{`exposure_bad{x="y"}`, 0, false, true},
	} {
		t.Run(tc.series, func(t *testing.T) {
			v, ok, err := ParseMetric(body, tc.series)
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, v)
		})
	}
}

func TestBuildPID(t *testing.T) {
	for _, tc := range []struct {
		name string
		pid  int
		ok   bool
	}{
		{"exposure-build-1234-987654", 1234, true},
		{"exposure-build-1-x", 1, true},
		{"exposure-build-1234", 0, false},
		{"exposure-build-abc-1", 0, false},
		{"exposure-build-0-1", 0, false},
		{"exposure-build--1-1", 0, false},
		{"other-1234-1", 0, false},
	} {
		pid, ok := buildPID(tc.name)
		require.Equal(t, tc.ok, ok, tc.name)
		require.Equal(t, tc.pid, pid, tc.name)
	}
}

// TestRemoveStaleBuilds removes the build directory of a process that has
// exited and keeps those of live processes and anything else.
func TestRemoveStaleBuilds(t *testing.T) {
	tmp := t.TempDir()
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	deadPID := dead.ProcessState.Pid()
	require.False(t, processAlive(deadPID))
	require.True(t, processAlive(os.Getpid()))
	require.True(t, processAlive(1))

	mk := func(name string) string {
		p := filepath.Join(tmp, name)
		require.NoError(t, os.MkdirAll(filepath.Join(p, "sub"), 0o755))
		return p
	}
	stale := mk(buildPrefix + strconv.Itoa(deadPID) + "-1")
	own := mk(buildPrefix + strconv.Itoa(os.Getpid()) + "-2")
	initDir := mk(buildPrefix + "1-3")
	odd := mk(buildPrefix + "x-4")
	other := mk("unrelated-" + strconv.Itoa(deadPID) + "-5")

	removeStaleBuilds(tmp)
	require.NoDirExists(t, stale)
	for _, d := range []string{own, initDir, odd, other} {
		require.DirExists(t, d)
	}
}

func TestTail(t *testing.T) {
	require.Equal(t, "abc", Tail("abc", 5))
	require.Equal(t, "abc", Tail("abc", 3))
	require.Equal(t, "bc", Tail("abc", 2))
	require.Empty(t, Tail("abc", 0))
}

func TestFreePort(t *testing.T) {
	p := FreePort(t)
	require.Positive(t, p)
	l, err := net.Listen("tcp4", FreeAddr(t))
	require.NoError(t, err)
	require.NoError(t, l.Close())
	l, err = net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	require.NoError(t, err, "the port is free")
	require.NoError(t, l.Close())
}

func TestHTTPGetAndWaitHTTP(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ready")
	}))
	defer srv.Close()

	code, body := HTTPGet(srv.URL)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not yet\n", body)
	WaitHTTP(t, srv.URL, 10*time.Second)
	require.Equal(t, int32(3), calls.Load(), "WaitHTTP stops at the first 200")
	code, body = HTTPGet(srv.URL)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ready", body)

	code, body = HTTPGet("http://" + FreeAddr(t))
	require.Zero(t, code)
	require.Contains(t, body, "refused")
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, 10*time.Second, "the third call", func() bool { n++; return n == 3 })
	require.Equal(t, 3, n)
}

func TestRequireTool(t *testing.T) {
	p := RequireTool(t, "sh")
	require.True(t, filepath.IsAbs(p), p)
	fi, err := os.Stat(p)
	require.NoError(t, err)
	require.NotZero(t, fi.Mode()&0o111)
}

func TestProcessStop(t *testing.T) {
	dir := t.TempDir()
	// A program that exits 0 on SIGTERM once it has said so.
	p := StartProcess(t, filepath.Join(dir, "clean.log"), []string{"LAB_GREETING=hello"}, "sh", "-c",
		`trap 'echo bye; exit 0' TERM; echo "$LAB_GREETING"; while :; do sleep 0.1; done`)
	Eventually(t, 10*time.Second, "the greeting", func() bool {
		b, _ := os.ReadFile(p.Log)
		return strings.Contains(string(b), "hello")
	})
	require.Positive(t, p.Pid())
	require.NoError(t, p.Stop(t, syscall.SIGTERM, 10*time.Second))
	b, err := os.ReadFile(p.Log)
	require.NoError(t, err)
	require.Equal(t, "hello\nbye\n", string(b))

	// Killed: the exit is an error.
	p = StartProcess(t, filepath.Join(dir, "killed.log"), nil, "sleep", "60")
	err = p.Stop(t, syscall.SIGKILL, 10*time.Second)
	require.Error(t, err)
	require.Contains(t, err.Error(), "killed")

	// Already exited: Stop reports how.
	p = StartProcess(t, filepath.Join(dir, "exited.log"), nil, "sh", "-c", "exit 3")
	Eventually(t, 10*time.Second, "the exit", func() bool {
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	})
	var ee *exec.ExitError
	require.ErrorAs(t, p.Stop(t, syscall.SIGTERM, 10*time.Second), &ee)
	require.Equal(t, 3, ee.ExitCode())
}

func TestAlertmanagerAlerts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v2/alerts" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `[
  {"labels": {"alertname": "A", "port": "1"}, "startsAt": "2026-01-02T03:04:05Z", "endsAt": "2026-01-02T04:04:05Z", "status": {"state": "active"}},
  {"labels": {"alertname": "B"}, "status": {"state": "suppressed"}},
  {"labels": {"alertname": "A", "port": "2"}, "status": {"state": "active"}}
]`)
	}))
	defer srv.Close()
	am := &Alertmanager{URL: srv.URL}
	require.Len(t, am.Alerts(t, ""), 3)
	a := am.Alerts(t, "A")
	require.Len(t, a, 2)
	require.Equal(t, map[string]string{"alertname": "A", "port": "1"}, a[0].Labels)
	require.Equal(t, "active", a[0].Status.State)
	require.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), a[0].StartsAt)
	require.Equal(t, "2", a[1].Labels["port"])
	require.Equal(t, "suppressed", am.Alerts(t, "B")[0].Status.State)
	require.Empty(t, am.Alerts(t, "C"))
}

func TestPrometheusQuery(t *testing.T) {
	answers := map[string]string{
		"two":    `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]},{"metric":{},"value":[1,"2"]}]}}`,
		"none":   `{"status":"success","data":{"resultType":"vector","result":[]}}`,
		"scalar": `{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}`,
		"bad":    `{"status":"error","errorType":"bad_data","error":"parse error"}`,
		"down":   `{"status":"error","errorType":"unavailable","error":"no"}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, answers[r.URL.Query().Get("query")])
	}))
	defer srv.Close()
	p := &Prometheus{URL: srv.URL, client: srv.Client()}
	for _, tc := range []struct {
		expr string
		n    int
		bad  bool
		err  bool
	}{
		{"two", 2, false, false},
		{"none", 0, false, false},
		{"scalar", 1, false, false},
		{"bad", 0, true, true},
		{"down", 0, false, true},
		{"garbage", 0, false, true}, // an empty answer does not decode
	} {
		n, bad, err := p.Query(tc.expr)
		require.Equal(t, tc.n, n, tc.expr)
		require.Equal(t, tc.bad, bad, tc.expr)
		require.Equal(t, tc.err, err != nil, "%s: %v", tc.expr, err)
		if tc.err {
			require.Zero(t, p.Series(tc.expr), tc.expr)
		} else {
			require.Equal(t, tc.n, p.Series(tc.expr), tc.expr)
		}
	}
}

// TestLabBuildExposure builds the binary once per process: the same path
// twice, a directory others may enter, and a program that runs.
func TestLabBuildExposure(t *testing.T) {
	RequireBinary(t, "go")
	bin := BuildExposure(t)
	require.Equal(t, bin, BuildExposure(t))
	fi, err := os.Stat(filepath.Dir(bin))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
	pid, ok := buildPID(filepath.Base(filepath.Dir(bin)))
	require.True(t, ok)
	require.Equal(t, os.Getpid(), pid)
	out, err := exec.Command(bin, "--help").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "daemon")
}

func TestPrometheusRulesAndAlerts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/rules":
			fmt.Fprint(w, `{"status":"success","data":{"groups":[
  {"name":"a","rules":[{"name":"R1","health":"ok","type":"alerting"},{"name":"R2","health":"err","lastError":"boom","type":"recording"}]},
  {"name":"b","rules":[{"name":"R3","health":"ok","type":"alerting"}]}]}}`)
		case "/api/v1/alerts":
			fmt.Fprint(w, `{"status":"success","data":{"alerts":[{"labels":{"alertname":"A","target":"loop"},"state":"pending"}]}}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	p := &Prometheus{URL: srv.URL, client: srv.Client()}
	rules, err := p.Rules()
	require.NoError(t, err)
	require.Equal(t, []PromRule{
		{Name: "R1", Health: "ok", Type: "alerting"},
		{Name: "R2", Health: "err", LastError: "boom", Type: "recording"},
		{Name: "R3", Health: "ok", Type: "alerting"},
	}, rules)
	alerts, err := p.Alerts()
	require.NoError(t, err)
	require.Equal(t, []PromAlert{{Labels: map[string]string{"alertname": "A", "target": "loop"}, State: "pending"}}, alerts)

	p.URL += "/nothing"
	_, err = p.Rules()
	require.Error(t, err)
	_, err = p.Alerts()
	require.Error(t, err)
}
