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
// scanner, service detection, diff and confirmation, scan a lab host that
// does not change 100 times on a 1 s schedule: not one change may come out,
// with a clean network and with 5% random packet loss on the host.
func TestLabSoakUnchangedLab(t *testing.T) {
	t.Parallel()
	for _, loss := range []float64{0, 0.05} {
		t.Run(fmt.Sprintf("loss=%g", loss), func(t *testing.T) {
			t.Parallel()
			l := lab.New(t)
			h := l.AddHost("soak")
			lab.Start(t, h, "sshd", "nginx")
			ctx := context.Background()
			if loss > 0 {
				require.NoError(t, h.SetLoss(ctx, loss))
			}

			dir := t.TempDir()
			cfg := filepath.Join(dir, "exposure.yml")
			require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  run_at_start: true
  jitter: 0s
targets:
  - name: soak
    hosts: [%s]
    ports: "22,80,443,8000-8010"
    schedule: "@every 1s"
    reverse_dns: false
    service_detection: {enabled: true, timeout: 3s}
`, h.Addr())), 0o600))
			addrs := []string{"127.0.0.1:0"}
			socket, webCfg := false, ""
			reg := prometheus.NewRegistry()
			d := newDaemonState(Options{
				ConfigFile: cfg, StoragePath: filepath.Join(dir, "x.db"),
				Web:      &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &socket, WebConfigFile: &webCfg},
				Registry: reg, Logger: discardLogger(), Notify: func(string) error { return nil },
			})
			require.NoError(t, d.opts.validate())
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- d.run(rctx, nil) }()
			defer func() {
				cancel()
				require.NoError(t, <-done)
			}()
			select {
			case <-d.readyCh:
			case err := <-done:
				t.Fatalf("daemon exited: %v", err)
			}

			const want = 101 // the baseline and 100 scans after it
			deadline := time.Now().Add(200 * time.Second)
			for scans(reg, "soak", resultSuccess)+scans(reg, "soak", resultIncomplete)+scans(reg, "soak", resultFailed) < want {
				if time.Now().After(deadline) {
					mfs, _ := reg.Gather()
					for _, mf := range mfs {
						if mf.GetName() == "exposure_scan_duration_seconds" || mf.GetName() == "exposure_scans_skipped_total" || mf.GetName() == "exposure_scans_total" {
							t.Logf("%v", mf.GetMetric())
						}
					}
					t.Fatalf("fewer than %d scans in 200 s", want)
				}
				time.Sleep(500 * time.Millisecond)
			}
			ok, inc, failed := scans(reg, "soak", resultSuccess), scans(reg, "soak", resultIncomplete), scans(reg, "soak", resultFailed)
			t.Logf("loss %g: %v complete, %v incomplete, %v failed scans", loss, ok, inc, failed)
			require.GreaterOrEqual(t, ok, float64(want)-5, "nearly every scan completes")

			changes, err := d.store.Changes("soak", time.Time{}, time.Time{})
			require.NoError(t, err)
			require.Empty(t, changes)
			latest, err := d.store.LatestComplete("soak")
			require.NoError(t, err)
			require.Equal(t, 3, latest.OpenPorts(), "ssh, http and https stay open")
		})
	}
}
