package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/snapshot"
)

func TestScanBadArguments(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad port range", []string{"scan", "-p", "80-70", "127.0.0.1"}, `"80-70": range end before start`},
		{"bad port", []string{"scan", "-p", "70000", "127.0.0.1"}, `"70000"`},
		// An empty spec is an error, never all ports (that is "-p -").
		{"empty port spec", []string{"scan", "-p", "", "127.0.0.1"}, `bad port spec (-p): "": empty port spec`},
		{"empty --ports=", []string{"scan", "--ports=", "127.0.0.1"}, `bad port spec (-p): "": empty port spec`},
		{"blank port spec", []string{"scan", "-p", " ", "127.0.0.1"}, "empty port spec"},
		{"lone comma", []string{"scan", "-p", ",", "127.0.0.1"}, `bad port spec (-p)`},
		{"bad target", []string{"scan", "300.1.1.1"}, `"300.1.1.1"`},
		{"negative rate", []string{"scan", "--rate=-5", "127.0.0.1"}, "--rate -5"},
		{"too many retries", []string{"scan", "--retries", "99", "127.0.0.1"}, "--retries 99"},
		{"bad engine", []string{"scan", "--engine", "udp", "127.0.0.1"}, "udp"},
		{"bad format", []string{"scan", "--format", "yaml", "127.0.0.1"}, "yaml"},
		{"no target", []string{"scan"}, "target"},
		{"bad intensity", []string{"scan", "--sV", "--version-intensity", "12", "127.0.0.1"}, "--version-intensity 12"},
		// A bad or missing interface is a usage error naming it, before
		// anything is scanned.
		{"interface alias syntax", []string{"scan", "-e", "eth0:1", "127.0.0.1"}, `bad --interface (-e): interface name "eth0:1": must not contain '/' or ':'`},
		{"interface too long", []string{"scan", "--interface", "much-too-long-name0", "127.0.0.1"}, "longer than 15 bytes"},
		{"interface missing", []string{"scan", "-e", "nosuchif0", "127.0.0.1"}, `interface "nosuchif0": no such network interface`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			require.Equal(t, 2, code, "stderr: %s", stderr.String())
			require.Contains(t, stderr.String(), tt.want)
			require.Empty(t, stdout.String())
		})
	}
}

// TestScanAllPortsDash: "-p -" means all ports, as in nmap, however it is
// typed. The target is bad, so nothing is scanned; the port spec must have
// been accepted first.
func TestScanAllPortsDash(t *testing.T) {
	for _, args := range [][]string{
		{"scan", "-p", "-", "300.0.0.1"},
		{"scan", "-p-", "300.0.0.1"},
		{"scan", "--ports", "-", "300.0.0.1"},
		{"scan", "--ports=-", "300.0.0.1"},
	} {
		code, out, errs := runCLI(t, args...)
		require.Equal(t, 2, code, "%v: %s", args, errs)
		require.Equal(t, "exposure scan: bad target: \"300.0.0.1\": invalid IP address\n", errs, "%v", args)
		require.Empty(t, out)
	}
}

// TestScanServiceDetection runs -sV against a loopback listener that
// greets like an SSH server.
func TestScanServiceDetection(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"))
			time.AfterFunc(2*time.Second, func() { c.Close() })
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	var stdout, stderr bytes.Buffer
	code := run([]string{"scan", "-n", "--engine", "connect", "--sV", "-p", strconv.Itoa(port), "127.0.0.1"}, &stdout, &stderr)
	require.Equal(t, 0, code, "stderr: %s", stderr.String())
	require.Regexp(t, fmt.Sprintf(`(?m)^PORT +STATE +SERVICE +VERSION\n%d/tcp +open +ssh +OpenSSH 9\.2p1`, port), stdout.String())
}

func listenLocal(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return p
}

func TestScanLoopback(t *testing.T) {
	engines := []string{"connect"}
	if os.Geteuid() == 0 {
		engines = append(engines, "syn", "auto")
	}
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			open := listenLocal(t, 2)
			closed := freePort(t)
			spec := fmt.Sprintf("%d,%d,%d", open[0], open[1], closed)

			var stdout, stderr bytes.Buffer
			code := run([]string{"scan", "-n", "--engine", engine, "--format", "json", "-p", spec, "127.0.0.1"}, &stdout, &stderr)
			require.Equal(t, 0, code, "stderr: %s", stderr.String())
			var snap snapshot.Snapshot
			require.NoError(t, json.Unmarshal(stdout.Bytes(), &snap), stdout.String())
			require.True(t, snap.Complete)
			require.Len(t, snap.Hosts, 1)
			h := snap.Hosts[0]
			require.Equal(t, "127.0.0.1", h.Address)
			require.Equal(t, snapshot.HostUp, h.State)
			var got []int
			for _, p := range h.Ports {
				require.Equal(t, snapshot.StateOpen, p.State)
				require.Equal(t, "tcp", p.Protocol)
				got = append(got, int(p.Port))
			}
			require.ElementsMatch(t, open, got)
			require.Equal(t, uint64(1), snap.Quality.Closed)
			require.Equal(t, uint64(3), snap.Quality.Replies)

			stdout.Reset()
			stderr.Reset()
			code = run([]string{"scan", "-n", "--engine", engine, "-p", spec, "127.0.0.1"}, &stdout, &stderr)
			require.Equal(t, 0, code, "stderr: %s", stderr.String())
			out := stdout.String()
			require.Contains(t, out, "Exposure scan report for 127.0.0.1\nHost is up.\nNot shown: 1 closed tcp port\nPORT")
			for _, p := range open {
				require.Regexp(t, fmt.Sprintf(`(?m)^%d/tcp +open +\S+$`, p), out)
			}
			require.NotContains(t, out, fmt.Sprintf("%d/tcp", closed))
			require.Contains(t, out, "Exposure done: 1 host up, 2 open ports")
			require.False(t, strings.Contains(stderr.String(), "\r"), "no progress bar when stderr is not a terminal")
		})
	}
}

// TestScanTextMarksIncompleteDetection: a service whose detection ran out
// of time gets nmap's "?" after its name.
func TestScanTextMarksIncompleteDetection(t *testing.T) {
	sn := &snapshot.Snapshot{Target: "t", Complete: true, Hosts: []snapshot.Host{{
		Address: "198.18.0.2", State: snapshot.HostUp, Ports: []snapshot.Port{
			{Port: 993, Protocol: "tcp", State: snapshot.StateOpen,
				Service: &snapshot.Service{Name: "imap", Product: "Dovecot imapd", Tunnel: "ssl", Incomplete: true}},
			{Port: 22, Protocol: "tcp", State: snapshot.StateOpen,
				Service: &snapshot.Service{Name: "ssh", Product: "OpenSSH", Version: "9.2p1"}},
		}}}}
	var out bytes.Buffer
	require.NoError(t, writeScanText(&out, sn, snapshotHosts(sn), true))
	require.Regexp(t, `(?m)^993/tcp +open +ssl/imap\? +Dovecot imapd$`, out.String())
	require.Regexp(t, `(?m)^22/tcp +open +ssh +OpenSSH 9\.2p1$`, out.String())
}

// unprivilegedEnv marks the copy of the test binary that runs without
// CAP_NET_RAW (TestScanSYNWithoutRawPrivilege).
const unprivilegedEnv = "EXPOSURE_TEST_NO_NET_RAW"

// TestScanSYNWithoutRawPrivilege: without CAP_NET_RAW, --engine syn fails
// saying what it needs and what works instead, for IPv4 and IPv6 targets,
// and auto falls back to connect. As root, the test runs itself again with
// CAP_NET_RAW dropped from its capability bounding set (setpriv).
func TestScanSYNWithoutRawPrivilege(t *testing.T) {
	if os.Getenv(unprivilegedEnv) == "" && os.Geteuid() == 0 {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skip("setpriv (util-linux) is not installed")
		}
		cmd := exec.Command(setpriv, "--bounding-set=-net_raw", "--inh-caps=-net_raw", os.Args[0],
			"-test.run=^TestScanSYNWithoutRawPrivilege$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), unprivilegedEnv+"=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "--- PASS: TestScanSYNWithoutRawPrivilege")
		require.NotContains(t, string(out), "--- SKIP")
		return
	}
	if _, err := net.ListenPacket("ip4:tcp", "0.0.0.0"); err == nil {
		t.Skip("this process has CAP_NET_RAW")
	}
	open := listenLoopbackPort(t)
	for _, target := range []string{"127.0.0.1", "::1"} {
		code, out, errs := runCLI(t, "scan", "--engine", "syn", "-p", open, target)
		require.Equal(t, 1, code, errs)
		require.Empty(t, out)
		require.Equal(t, "exposure scan: scan engine: syn engine: open raw socket ip4:tcp: raw sockets need root or CAP_NET_RAW: "+
			"listen ip4:tcp 0.0.0.0: socket: operation not permitted; --engine connect needs neither\n", errs)
	}
	code, out, errs := runCLI(t, "scan", "-p", open, "127.0.0.1")
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "using the connect engine: raw sockets are not available")
	require.Contains(t, out, open+"/tcp")
}

// listenLoopbackPort opens a listener on 127.0.0.1 and returns its port.
func listenLoopbackPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
