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
	"github.com/exposure-monitor/exposure/snapshot"
)

// TestLabDaemonUDP runs the real binary on a lab host with real UDP
// daemons (named, snmpd, tftpd, memcached with UDP on) and a real
// Alertmanager: the target's UDP ports land in the same snapshot as its
// TCP ones with "protocol":"udp" and a service, exposure_port_open carries
// protocol="udp", never_open U:161 raises ExposureForbiddenPort labelled
// protocol="udp", a few unchanged scans under 5% packet loss report no
// port_closed, and a UDP port that goes silent (open|filtered) while the
// same TCP port stays open is one port_closed for 11211/udp, confirmed by
// re-probes over UDP.
func TestLabDaemonUDP(t *testing.T) {
	t.Parallel()
	lab.RequireBinary(t, lab.AlertmanagerBin)
	h, addr := labHost(t, "udpd")
	lab.StartUDP(t, h)
	am := lab.StartAlertmanager(t, lab.FreeAddr(t))

	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  run_at_start: true
  jitter: 0s
  interface: %s
targets:
  - name: lab
    hosts: [%s]
    ports: "T:53,11211,U:53,69,161,11211"
    schedule: "@every 2s"
    retries: 1
    reverse_dns: false
    service_detection: {enabled: true, timeout: 2s}
    expect:
      never_open: [U:161]
receivers:
  - name: am
    alertmanager: {url: %q, timeout: 2s}
`, h.Lab().Interface(), addr, am.URL)
	d := lab.StartExposureDaemon(t, lab.ExposureOptions{Config: writeConfig(t, dir, cfg), DB: filepath.Join(dir, "exposure.db")})
	awaitScan(t, d)

	// One snapshot, both protocols.
	code, body := lab.HTTPGet(d.URL + "/api/v1/snapshot?target=lab")
	require.Equal(t, 200, code, body)
	var sn snapshot.Snapshot
	require.NoError(t, json.Unmarshal([]byte(body), &sn))
	require.True(t, sn.Complete)
	require.Len(t, sn.Hosts, 1)
	got := map[string]string{}
	for _, p := range sn.Hosts[0].Ports {
		svc := ""
		if p.Service != nil {
			svc = p.Service.Name
		}
		got[fmt.Sprintf("%d/%s", p.Port, p.Protocol)] = p.State + " " + svc
	}
	for _, want := range []string{"53/tcp", "11211/tcp", "53/udp", "161/udp", "11211/udp"} {
		require.True(t, strings.HasPrefix(got[want], "open "), "%s open in %v", want, got)
	}
	require.Equal(t, "open domain", got["53/udp"], "UDP -sV names the name server")
	require.Equal(t, "open snmp", got["161/udp"])

	// Metrics and the status page name the protocol.
	_, ok := d.Metric(t, fmt.Sprintf(`exposure_port_open{address=%q,port="161",protocol="udp",service="snmp",target="lab"}`, addr))
	require.True(t, ok, "exposure_port_open for 161/udp")
	_, ok = d.Metric(t, fmt.Sprintf(`exposure_port_open{address=%q,port="53",protocol="udp",`, addr))
	require.True(t, ok, "exposure_port_open for 53/udp")
	_, page := lab.HTTPGet(d.URL + "/")
	require.Contains(t, page, `<td class="mono nowrap">161/udp</td>`)

	// never_open: [U:161] is a firewall regression on the baseline.
	alerts := awaitAlerts(t, am, "ExposureForbiddenPort", 30*time.Second)
	require.Len(t, alerts, 1, "161/udp only: the TCP ports are not in never_open")
	require.Equal(t, map[string]string{
		"alertname": "ExposureForbiddenPort", "target": "lab", "address": addr,
		"port": "161", "protocol": "udp", "severity": "critical",
	}, alerts[0].Labels)

	// Unchanged scans under 5% loss: UDP retries and the confirming
	// re-probes keep silence from a lost datagram from being a closure.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, h.SetLoss(ctx, 0.05))
	before := d.Value(t, `exposure_scans_total{result="success",target="lab"}`)
	lab.Eventually(t, 40*time.Second, "4 more scans under loss", func() bool {
		return d.Value(t, `exposure_scans_total{result="success",target="lab"}`) >= before+4
	})
	require.Zero(t, d.Value(t, `exposure_changes_total{kind="port_closed",target="lab"}`), "no false port_closed under 5%% loss")
	require.Zero(t, d.Value(t, `exposure_changes_total{kind="port_opened",target="lab"}`))

	// memcached's UDP port goes silent (open|filtered), its TCP port
	// stays open: one confirmed port_closed, for 11211/udp.
	_, err := h.Exec(ctx, "iptables", "-w", "-I", "INPUT", "-p", "udp", "--dport", "11211", "-j", "DROP")
	require.NoError(t, err)
	lab.Eventually(t, 30*time.Second, "port_closed for 11211/udp", func() bool {
		return d.Value(t, `exposure_changes_total{kind="port_closed",target="lab"}`) >= 1
	})
	_, ok = d.Metric(t, fmt.Sprintf(`exposure_port_open{address=%q,port="11211",protocol="tcp",`, addr))
	require.True(t, ok, "11211/tcp is still open")
	require.NoError(t, d.Stop(t, syscall.SIGTERM, 30*time.Second))
	out, err := exec.Command(d.Bin, "history", "--storage.path", d.DB, "--target", "lab", "--format", "json").Output()
	require.NoError(t, err)
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var c snapshot.Change
		require.NoError(t, json.Unmarshal([]byte(line), &c), line)
		kinds = append(kinds, fmt.Sprintf("%s %d/%s", c.Kind, c.Port, c.Protocol))
	}
	require.Equal(t, []string{"forbidden_open 161/udp", "port_closed 11211/udp"}, kinds)
}
