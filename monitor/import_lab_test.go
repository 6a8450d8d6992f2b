package monitor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
)

// TestLabDaemonAfterImport: a team moving from nmap + ndiff imports its
// nmap XML, then runs the daemon on the same target. The daemon's first
// diff is against the imported baseline: the ports nmap saw are not
// reported again, a port opened since is, and the history reads across
// imported and native scans.
func TestLabDaemonAfterImport(t *testing.T) {
	t.Parallel()
	lab.RequireBinary(t, "nmap")
	h, addr := labHost(t, "imported")
	lab.Start(t, h, "sshd", "nginx")
	dir := t.TempDir()
	xml := filepath.Join(dir, "nmap.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nmap", "-n", "-Pn", "-sS", "-sV", "-e", h.Lab().Interface(), "-p", "22,80,8083", "-oX", xml, addr).CombinedOutput()
	require.NoError(t, err, "nmap: %s", out)

	bin := lab.BuildExposure(t)
	db := filepath.Join(dir, "exposure.db")
	out, err = exec.Command(bin, "import", "--storage.path", db, "--target", "lab", xml).CombinedOutput()
	require.NoError(t, err, "import: %s", out)

	ln := h.Listen(8083) // opened after nmap's scan
	defer ln.Close()
	cfg := fmt.Sprintf(`global:
  run_at_start: true
  jitter: 0s
  interface: %s
targets:
  - name: lab
    hosts: [%s]
    ports: "22,80,8083"
    schedule: "@every 2s"
    service_detection: {enabled: true, timeout: 2s}
receivers:
  - name: log
    log: {}
`, h.Lab().Interface(), addr)
	d := lab.StartExposureDaemon(t, lab.ExposureOptions{Bin: bin, Config: writeConfig(t, dir, cfg), DB: db})
	lab.Eventually(t, 30*time.Second, "three scans", func() bool {
		return d.Value(t, `exposure_scans_total{result="success",target="lab"}`) >= 3
	})
	require.NoError(t, d.Stop(t, syscall.SIGTERM, 30*time.Second))

	out, err = exec.Command(bin, "history", "--storage.path", db, "--target", "lab", "--format", "json").Output()
	require.NoError(t, err)
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var c struct {
			Kind   string `json:"kind"`
			Port   int    `json:"port"`
			Before any    `json:"before"`
			After  any    `json:"after"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &c), line)
		kinds = append(kinds, fmt.Sprintf("%s:%d", c.Kind, c.Port))
		t.Logf("change: %s", line)
	}
	require.Equal(t, []string{"port_opened:8083"}, kinds, "the changes since nmap's scan")

	// The store holds nmap's scan and the daemon's, oldest first.
	out, err = exec.Command(bin, "diff", "--storage.path", db, "--target", "lab").CombinedOutput()
	require.NoError(t, err, "diff: %s", out)
	t.Logf("exposure diff:\n%s", out)
}
