package monitor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
)

// TestLabSoakUnchangedLab lets the in-process daemon, with the real
// scanner, service detection, diff and confirmation, scan two lab hosts
// that do not change, each 100 times after its baseline on a 1 s schedule:
// "clean" on a clean network, "lossy" with 5% random packet loss. Not one
// change may come out.
func TestLabSoakUnchangedLab(t *testing.T) {
	t.Parallel()
	l := lab.New(t)
	clean, lossy := l.AddHost("clean"), l.AddHost("lossy")
	lab.Start(t, clean, "sshd", "nginx")
	lab.Start(t, lossy, "sshd", "nginx")
	ctx := context.Background()
	require.NoError(t, lossy.SetLoss(ctx, 0.05))

	dir := t.TempDir()
	cfg := filepath.Join(dir, "exposure.yml")
	target := func(name, addr string) string {
		return fmt.Sprintf(`  - name: %s
    hosts: [%s]
    ports: "22,80,443,8000-8010"
    schedule: "@every 1s"
    reverse_dns: false
    service_detection: {enabled: true, timeout: 3s}
`, name, addr)
	}
	require.NoError(t, os.WriteFile(cfg, []byte("global:\n  run_at_start: true\n  jitter: 0s\n  interface: "+clean.Lab().Interface()+"\ntargets:\n"+
		target("clean", clean.Addr().String())+target("lossy", lossy.Addr().String())), 0o600))
	addrs := []string{"127.0.0.1:0"}
	socket, webCfg := false, ""
	reg := prometheus.NewRegistry()
	d := newDaemonState(Options{
		ConfigFile: cfg, StoragePath: filepath.Join(dir, "x.db"),
		Web:      &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &socket, WebConfigFile: &webCfg},
		Registry: reg, Logger: discardLogger(), Notify: func(string) error { return nil },
	})
	runDaemon(t, d, nil)

	const want = 101 // the baseline and 100 scans after it
	total := func(name string) float64 {
		return scans(reg, name, resultSuccess) + scans(reg, name, resultIncomplete) + scans(reg, name, resultFailed)
	}
	deadline := time.Now().Add(200 * time.Second)
	for total("clean") < want || total("lossy") < want {
		if time.Now().After(deadline) {
			t.Fatalf("after 200 s: %v scans of clean, %v of lossy; want %d each", total("clean"), total("lossy"), want)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, name := range []string{"clean", "lossy"} {
		ok, inc, failed := scans(reg, name, resultSuccess), scans(reg, name, resultIncomplete), scans(reg, name, resultFailed)
		t.Logf("%s: %v complete, %v incomplete, %v failed scans", name, ok, inc, failed)
		require.GreaterOrEqual(t, ok, float64(want)-5, "%s: nearly every scan completes", name)
		changes, err := d.store.Changes(name, time.Time{}, time.Time{})
		require.NoError(t, err)
		require.Empty(t, changes, name)
		latest, err := d.store.LatestComplete(name)
		require.NoError(t, err)
		require.Equal(t, 3, latest.OpenPorts(), "%s: ssh, http and https stay open", name)
	}
}
