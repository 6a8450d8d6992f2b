package monitor_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
)

// startLabDaemon runs the binary built from this tree as `exposure daemon`
// on cfg with a fresh store and a NOTIFY_SOCKET with a 2 s watchdog, and
// waits until it is ready.
func startLabDaemon(t *testing.T, cfg string) *lab.ExposureDaemon {
	t.Helper()
	dir := t.TempDir()
	return lab.StartExposureDaemon(t, lab.ExposureOptions{Config: writeConfig(t, dir, cfg), DB: filepath.Join(dir, "exposure.db"), Notify: true})
}

// writeConfig writes cfg to dir/exposure.yml and returns its path.
func writeConfig(t *testing.T, dir, cfg string) string {
	t.Helper()
	file := filepath.Join(dir, "exposure.yml")
	require.NoError(t, os.WriteFile(file, []byte(cfg), 0o600))
	return file
}

// labHost adds a host named name to a new lab and returns it with its
// address.
func labHost(t *testing.T, name string) (*lab.Host, string) {
	t.Helper()
	h := lab.New(t).AddHost(name)
	return h, h.Addr().String()
}

// startLabHost adds a host to a new lab and runs the daemon on labConfig
// for its address on schedule. It returns the host, its address and the
// daemon.
func startLabHost(t *testing.T, name, schedule string) (*lab.Host, string, *lab.ExposureDaemon) {
	t.Helper()
	h, addr := labHost(t, name)
	return h, addr, startLabDaemon(t, labConfig(h, schedule))
}

// awaitScan waits up to 30 s for the daemon's first successful scan of
// target "lab".
func awaitScan(t *testing.T, d *lab.ExposureDaemon) {
	t.Helper()
	lab.Eventually(t, 30*time.Second, "a successful scan", func() bool {
		return d.Value(t, `exposure_scans_total{result="success",target="lab"}`) >= 1
	})
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

// daemonConfig is the configuration of the lab tests' daemons: one target
// "lab" on addr scanning 22 and 8080-8090 on schedule, with forbiddenPort
// never open, extra target keys (each line indented by four spaces) and
// the receivers (YAML list items).
func daemonConfig(h *lab.Host, schedule, extra, receivers string) string {
	// interface binds every socket of the daemon's scans to the lab's
	// bridge: should the lab vanish mid-test, no probe can leave through
	// another interface.
	return fmt.Sprintf(`global:
  run_at_start: true
  jitter: 0s
  interface: %s
targets:
  - name: lab
    hosts: [%s]
    ports: "22,8080-8090"
    schedule: %q
%s    expect:
      never_open: [%d]
receivers:
%s`, h.Lab().Interface(), h.Addr(), schedule, extra, forbiddenPort, receivers)
}

// labConfig is daemonConfig with service detection and a log receiver.
func labConfig(h *lab.Host, schedule string) string {
	return daemonConfig(h, schedule, "    service_detection: {enabled: true, timeout: 2s}\n", "  - name: log\n    log: {}\n")
}

// TestLabDaemonEndToEnd runs the real binary against a lab host: a port
// opened there shows up as exposure_port_open and a port_opened change, and
// vanishes when closed; a bad reload keeps the daemon up with the gauge at
// 0; SIGTERM stops it cleanly with everything committed.
func TestLabDaemonEndToEnd(t *testing.T) {
	t.Parallel()
	h, addr, d := startLabHost(t, "web", "@every 2s")

	portOpen := fmt.Sprintf(`exposure_port_open{address="%s",port="8083",protocol="tcp",`, addr)
	awaitScan(t, d)
	_, present := d.Metric(t, portOpen)
	require.False(t, present, "8083 is not open yet")

	ln := h.Listen(8083)
	lab.Eventually(t, 30*time.Second, "exposure_port_open for 8083", func() bool {
		_, ok := d.Metric(t, portOpen)
		return ok
	})
	lab.Eventually(t, 10*time.Second, "the port_opened change", func() bool {
		v, _ := d.Metric(t, `exposure_changes_total{kind="port_opened",target="lab"}`)
		return v == 1
	})
	_, page := lab.HTTPGet(d.URL + "/")
	require.Contains(t, page, fmt.Sprintf(`data-target="lab" data-address="%s" data-port="8083"`, addr))
	require.Contains(t, page, `<tr class="change kind-port_opened">`)

	// Idle RSS after scan cycles with service detection.
	time.Sleep(3 * time.Second)
	rss := rssKiB(t, d.Pid())
	t.Logf("idle RSS after scan cycles: %.1f MiB", float64(rss)/1024)
	require.Less(t, rss, 40*1024, "idle RSS target is < 40 MB")

	require.NoError(t, ln.Close())
	lab.Eventually(t, 30*time.Second, "exposure_port_open for 8083 to vanish", func() bool {
		_, ok := d.Metric(t, portOpen)
		return !ok
	})

	// A bad config: the daemon stays up on the old one.
	require.NoError(t, os.WriteFile(d.Config, []byte(strings.Replace(labConfig(h, "@every 2s"), "8080-8090", "8090-8080", 1)), 0o600))
	require.NoError(t, d.Signal(syscall.SIGHUP))
	lab.Eventually(t, 10*time.Second, "the failed reload", func() bool {
		v, ok := d.Metric(t, "exposure_config_last_reload_successful")
		return ok && v == 0
	})
	code, _ := lab.HTTPGet(d.URL + "/-/ready")
	require.Equal(t, http.StatusOK, code)
	lab.Eventually(t, 5*time.Second, "READY=1 after the failed reload", func() bool {
		// The watchdog pings every second: look past them.
		st := slices.DeleteFunc(d.Notified(), func(s string) bool { return s == "WATCHDOG=1" })
		return len(st) > 0 && st[len(st)-1] == "READY=1"
	})
	before, _ := d.Metric(t, `exposure_scans_total{result="success",target="lab"}`)
	lab.Eventually(t, 15*time.Second, "scans to go on", func() bool {
		v, _ := d.Metric(t, `exposure_scans_total{result="success",target="lab"}`)
		return v > before
	})

	// SIGTERM: a clean exit, and the history is on disk.
	require.NoError(t, d.Stop(t, syscall.SIGTERM, 30*time.Second))
	var states []string
	pings := 0
	for _, s := range d.Notified() {
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
	out, err := exec.Command(d.Bin, "history", "--storage.path", d.DB, "--target", "lab", "--format", "json").Output()
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
	h, addr, d := startLabHost(t, "app", "@every 5s")

	prom := lab.StartPrometheus(t, lab.PrometheusOptions{Target: d.Addr})
	lab.Eventually(t, 60*time.Second, "Prometheus to scrape exposure_open_ports", func() bool {
		return prom.Series(`exposure_open_ports{target="lab"}`) == 1
	})

	series := fmt.Sprintf(`exposure_port_open{target="lab",address=%q,port="8085"}`, addr)
	require.Zero(t, prom.Series(series))
	ln := h.Listen(8085)
	opened := time.Now()
	lab.Eventually(t, 30*time.Second, "Prometheus to see exposure_port_open for 8085", func() bool {
		return prom.Series(series) == 1
	})
	t.Logf("port 8085 visible in Prometheus %.1f s after it opened (schedule 5 s, scrape 1 s)", time.Since(opened).Seconds())
	require.NotZero(t, prom.Series(`exposure_open_ports{target="lab"} >= 1`))

	require.NoError(t, ln.Close())
	lab.Eventually(t, 30*time.Second, "the series to go stale in Prometheus", func() bool {
		return prom.Series(series) == 0
	})
}
