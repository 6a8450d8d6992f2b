package monitor_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
)

// labDaemon is an `exposure daemon` process started by a lab test.
type labDaemon struct {
	bin, cfg, db, url string
	cmd               *exec.Cmd
	log               *os.File
	exited            chan error

	// notify collects what the daemon sent to its NOTIFY_SOCKET.
	mu       sync.Mutex
	notified []string
}

func (d *labDaemon) states() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.notified...)
}

// buildExposure builds the command into dir.
func buildExposure(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "exposure")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/exposure")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func startLabDaemon(t *testing.T, cfg string) *labDaemon {
	t.Helper()
	dir := t.TempDir()
	d := &labDaemon{bin: buildExposure(t, dir), cfg: filepath.Join(dir, "exposure.yml"), db: filepath.Join(dir, "exposure.db"), exited: make(chan error, 1)}
	require.NoError(t, os.WriteFile(d.cfg, []byte(cfg), 0o600))
	addr := freePort(t)
	d.url = "http://" + addr
	var err error
	d.log, err = os.Create(filepath.Join(dir, "daemon.log"))
	require.NoError(t, err)
	// A NOTIFY_SOCKET as systemd provides it, with a 2 s watchdog.
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "notify.sock"), Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { sock.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				return
			}
			d.mu.Lock()
			d.notified = append(d.notified, string(buf[:n]))
			d.mu.Unlock()
		}
	}()
	d.cmd = exec.Command(d.bin, "daemon", "--config.file", d.cfg, "--storage.path", d.db, "--web.listen-address", addr)
	d.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock.LocalAddr().String(), "WATCHDOG_USEC=2000000")
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
			t.Logf("daemon log:\n%s", b)
		}
	})
	eventually(t, 30*time.Second, "the daemon to be ready", func() bool {
		code, _ := httpGet(d.url + "/-/ready")
		return code == http.StatusOK
	})
	return d
}

func httpGet(u string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, string(b)
}

// eventually polls cond every 200 ms for at most d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// metric returns the value of the first series written exactly as series,
// or, when series ends in ",", of the first one starting with it.
func (d *labDaemon) metric(t *testing.T, series string) (float64, bool) {
	t.Helper()
	_, body := httpGet(d.url + "/metrics")
	for _, line := range strings.Split(body, "\n") {
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:sp]
		if name == series || strings.HasSuffix(series, ",") && strings.HasPrefix(name, series) {
			v, err := strconv.ParseFloat(line[sp+1:], 64)
			require.NoError(t, err, line)
			return v, true
		}
	}
	return 0, false
}

func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func labConfig(addr string, schedule string) string {
	return fmt.Sprintf(`global:
  run_at_start: true
  jitter: 0s
targets:
  - name: lab
    hosts: [%s]
    ports: "22,8080-8090"
    schedule: "%s"
    service_detection: {enabled: true, timeout: 2s}
    expect:
      never_open: [8089]
receivers:
  - name: log
    log: {}
`, addr, schedule)
}

// TestLabDaemonEndToEnd runs the real binary against a lab host: a port
// opened there shows up as exposure_port_open and a port_opened change, and
// vanishes when closed; a bad reload keeps the daemon up with the gauge at
// 0; SIGTERM stops it cleanly with everything committed.
func TestLabDaemonEndToEnd(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	h := l.AddHost("web")
	addr := h.Addr().String()
	d := startLabDaemon(t, labConfig(addr, "@every 2s"))

	portOpen := fmt.Sprintf(`exposure_port_open{address="%s",port="8083",protocol="tcp",`, addr)
	eventually(t, 30*time.Second, "a successful scan", func() bool {
		v, _ := d.metric(t, `exposure_scans_total{result="success",target="lab"}`)
		return v >= 1
	})
	_, present := d.metric(t, portOpen)
	require.False(t, present, "8083 is not open yet")

	ln := h.Listen(8083)
	eventually(t, 30*time.Second, "exposure_port_open for 8083", func() bool {
		_, ok := d.metric(t, portOpen)
		return ok
	})
	eventually(t, 10*time.Second, "the port_opened change", func() bool {
		v, _ := d.metric(t, `exposure_changes_total{kind="port_opened",target="lab"}`)
		return v == 1
	})
	_, page := httpGet(d.url + "/")
	require.Contains(t, page, fmt.Sprintf(`data-target="lab" data-address="%s" data-port="8083"`, addr))
	require.Contains(t, page, `<tr class="change kind-port_opened">`)

	// Idle RSS after scan cycles with service detection.
	time.Sleep(3 * time.Second)
	rss := rssKiB(t, d.cmd.Process.Pid)
	t.Logf("idle RSS after scan cycles: %.1f MiB", float64(rss)/1024)
	require.Less(t, rss, 40*1024, "idle RSS target is < 40 MB")

	require.NoError(t, ln.Close())
	eventually(t, 30*time.Second, "exposure_port_open for 8083 to vanish", func() bool {
		_, ok := d.metric(t, portOpen)
		return !ok
	})

	// A bad config: the daemon stays up on the old one.
	require.NoError(t, os.WriteFile(d.cfg, []byte(strings.Replace(labConfig(addr, "@every 2s"), "8080-8090", "8090-8080", 1)), 0o600))
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGHUP))
	eventually(t, 10*time.Second, "the failed reload", func() bool {
		v, ok := d.metric(t, "exposure_config_last_reload_successful")
		return ok && v == 0
	})
	code, _ := httpGet(d.url + "/-/ready")
	require.Equal(t, http.StatusOK, code)
	eventually(t, 5*time.Second, "READY=1 after the failed reload", func() bool {
		st := d.states()
		return len(st) > 0 && st[len(st)-1] == "READY=1"
	})
	before, _ := d.metric(t, `exposure_scans_total{result="success",target="lab"}`)
	eventually(t, 15*time.Second, "scans to go on", func() bool {
		v, _ := d.metric(t, `exposure_scans_total{result="success",target="lab"}`)
		return v > before
	})

	// SIGTERM: a clean exit, and the history is on disk.
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-d.exited:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30 s after SIGTERM")
	}
	var states []string
	pings := 0
	for _, s := range d.states() {
		switch {
		case s == "WATCHDOG=1":
			pings++
			continue
		case strings.HasPrefix(s, "RELOADING=1\nMONOTONIC_USEC="):
			s = "RELOADING=1"
		}
		states = append(states, s)
	}
	require.Equal(t, []string{"READY=1", "RELOADING=1", "READY=1", "STOPPING=1"}, states)
	require.GreaterOrEqual(t, pings, 5, "watchdog pings every second while the scheduler runs")
	out, err := exec.Command(d.bin, "history", "--storage.path", d.db, "--target", "lab", "--format", "json").Output()
	require.NoError(t, err)
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var c struct {
			Kind string `json:"kind"`
			Port int    `json:"port"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &c), line)
		kinds = append(kinds, fmt.Sprintf("%s:%d", c.Kind, c.Port))
	}
	require.Equal(t, []string{"port_opened:8083", "port_closed:8083"}, kinds)
}

// TestLabPrometheusScrapesDaemon has a real Prometheus scrape the daemon:
// its query API shows exposure_port_open for a port opened on a lab host
// within two schedule periods of the scrape catching up, and drops it once
// the port is closed.
func TestLabPrometheusScrapesDaemon(t *testing.T) {
	t.Parallel()
	lab.RequireBinary(t, "prometheus")
	l := lab.New(t)
	h := l.AddHost("app")
	addr := h.Addr().String()
	d := startLabDaemon(t, labConfig(addr, "@every 5s"))

	dir := t.TempDir()
	promAddr := freePort(t)
	target := strings.TrimPrefix(d.url, "http://")
	promCfg := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(promCfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: exposure
    static_configs:
      - targets: [%q]
`, target)), 0o600))
	promLog, err := os.Create(filepath.Join(dir, "prometheus.log"))
	require.NoError(t, err)
	prom := exec.Command("prometheus", "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr, "--storage.tsdb.retention.time=1h")
	prom.Stdout, prom.Stderr = promLog, promLog
	require.NoError(t, prom.Start())
	t.Cleanup(func() {
		_ = prom.Process.Signal(syscall.SIGTERM)
		_ = prom.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(promLog.Name())
			t.Logf("prometheus log (tail):\n%s", tail(string(b), 4000))
		}
	})

	query := func(q string) []map[string]any {
		_, body := httpGet("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		var r struct {
			Status string `json:"status"`
			Data   struct {
				Result []map[string]any `json:"result"`
			} `json:"data"`
		}
		if json.Unmarshal([]byte(body), &r) != nil || r.Status != "success" {
			return nil
		}
		return r.Data.Result
	}
	eventually(t, 60*time.Second, "Prometheus to scrape exposure_open_ports", func() bool {
		return len(query(`exposure_open_ports{target="lab"}`)) == 1
	})

	series := fmt.Sprintf(`exposure_port_open{target="lab",address=%q,port="8085"}`, addr)
	require.Empty(t, query(series))
	ln := h.Listen(8085)
	opened := time.Now()
	eventually(t, 30*time.Second, "Prometheus to see exposure_port_open for 8085", func() bool {
		return len(query(series)) == 1
	})
	t.Logf("port 8085 visible in Prometheus %.1f s after it opened (schedule 5 s, scrape 1 s)", time.Since(opened).Seconds())
	require.NotEmpty(t, query(`exposure_open_ports{target="lab"} >= 1`))

	require.NoError(t, ln.Close())
	eventually(t, 30*time.Second, "the series to go stale in Prometheus", func() bool {
		return len(query(series)) == 0
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
