package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/testnet"
	"github.com/exposure-monitor/exposure/snapshot"
)

// TestScanInterfaceLoopback scans loopback with every socket bound to lo
// (and -sV through lo too): the listener is found and identified.
func TestScanInterfaceLoopback(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := strconv.Itoa(int(testnet.Serve(t, l, func(c net.Conn) { _, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n")) })))
	var stdout, stderr bytes.Buffer
	code := run([]string{"scan", "-e", "lo", "--sV", "-n", "--engine", "connect", "--format", "json", "-p", port, "127.0.0.1"}, &stdout, &stderr)
	require.Equal(t, 0, code, "stderr: %s", stderr.String())
	var snap snapshot.Snapshot
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &snap))
	require.Equal(t, 1, snap.OpenPorts())
	require.Len(t, snap.Hosts, 1)
	require.Len(t, snap.Hosts[0].Ports, 1)
	svc := snap.Hosts[0].Ports[0].Service
	require.NotNil(t, svc)
	require.Equal(t, "OpenSSH", svc.Product)
}

// TestConfigInterfaceBadName: a bad global.interface is a configuration
// error (exit 2) for check-config and the daemon, with its line.
func TestConfigInterfaceBadName(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "exposure.yml")
	require.NoError(t, os.WriteFile(cfg, []byte("global:\n  interface: \"eth0:1\"\ntargets:\n  - name: a\n    hosts: [127.0.0.1]\n"), 0o600))
	want := `exposure.yml:2: global.interface: "eth0:1": must not contain '/' or ':'`
	for _, args := range [][]string{
		{"check-config", cfg},
		{"daemon", "--config.file", cfg, "--storage.path", filepath.Join(dir, "x.db"), "--web.listen-address", "127.0.0.1:0"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(args, &stdout, &stderr)
		require.Equal(t, 2, code, "%v: stdout %s stderr %s", args, stdout.String(), stderr.String())
		require.Contains(t, stdout.String()+stderr.String(), want, "%v", args)
	}
}
