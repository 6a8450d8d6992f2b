package service

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
)

// TestDetectEtcdDaemon runs Debian's etcd on loopback and checks that -sV
// names it, with the version etcd --version prints, from its /version,
// while its / (Go's own 404) alone names nothing but Go's net/http. The
// port is not etcd's, so the intensity is raised to send EtcdVersion
// there (rarity 8).
func TestDetectEtcdDaemon(t *testing.T) {
	etcd := lab.RequireTool(t, "etcd")
	out, err := exec.Command(etcd, "--version").Output()
	require.NoError(t, err)
	m := regexp.MustCompile(`etcd Version: ([\d.]+)`).FindSubmatch(out)
	require.NotNil(t, m, "etcd --version: %q", out)
	want := string(m[1])

	client, peer := lab.FreePort(t), lab.FreePort(t)
	curl := "http://127.0.0.1:" + strconv.Itoa(client)
	purl := "http://127.0.0.1:" + strconv.Itoa(peer)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, etcd, "--data-dir", t.TempDir(),
		"--listen-client-urls", curl, "--advertise-client-urls", curl,
		"--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
		"--initial-cluster", "default="+purl)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(client))
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	}, 20*time.Second, 100*time.Millisecond, "etcd did not listen on %s", addr)

	d, _ := newDetector(t, Options{Intensity: 9, Timeout: 3 * time.Second})
	got, err := d.Detect(context.Background(), netip.MustParseAddr("127.0.0.1"), uint16(client))
	require.NoError(t, err)
	require.Equal(t, "http", got.Name)
	require.Equal(t, "etcd", got.Product)
	require.Equal(t, want, got.Version)
	require.Contains(t, got.CPE, "cpe:/a:etcd:etcd:"+want)

	// At the default intensity EtcdVersion is not sent to a port that is
	// not etcd's, and Go's 404 on / must not be taken for etcd.
	d, _ = newDetector(t, Options{Intensity: DefaultIntensity, Timeout: 3 * time.Second})
	got, err = d.Detect(context.Background(), netip.MustParseAddr("127.0.0.1"), uint16(client))
	require.NoError(t, err)
	require.Equal(t, "http", got.Name)
	require.Equal(t, "Golang net/http server", got.Product)
}
