package service

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/snapshot"
)

// installed runs a daemon's version command and returns the first
// submatch of re in its output: the expected versions come from the
// installed packages, never from this file.
func installed(t *testing.T, re string, args ...string) string {
	t.Helper()
	// Some print their version only with their usage, and exit non-zero.
	out, _ := exec.Command(args[0], args[1:]...).CombinedOutput()
	m := regexp.MustCompile(re).FindStringSubmatch(string(out))
	require.NotNil(t, m, "%v printed %q", args, out)
	return m[1]
}

// opensshVersion turns the Debian package version 1:9.2p1-2+deb12u10 into
// the banner's "9.2p1 Debian 2+deb12u10", as nmap reports it.
func opensshVersion(t *testing.T) string {
	v := installed(t, `^(?:\d+:)?(.+)$`, "dpkg-query", "-W", "-f", "${Version}", "openssh-server")
	up, deb, ok := strings.Cut(v, "-")
	require.True(t, ok, v)
	return up + " Debian " + deb
}

// postgresRange is the range our probe gives for the installed major version.
func postgresRange(t *testing.T) string {
	major, err := strconv.Atoi(installed(t, `PostgreSQL\) (\d+)`, "postgres", "--version"))
	require.NoError(t, err)
	switch {
	case major >= 14:
		return "14.0 or later"
	case major >= 10:
		return "9.6.0 - 13"
	}
	t.Fatalf("postgres %d is older than the lab supports", major)
	return ""
}

func TestLabDaemons(t *testing.T) {
	l := lab.New(t)
	h := l.AddHost("sv")
	lab.Start(t, h, "sshd", "nginx", "redis", "postgresql", "memcached", "proftpd", "exim", "dovecot", "mosquitto", "named", "prometheus", "alertmanager")

	nginx := installed(t, `nginx/([\d.]+)`, "nginx", "-v")
	exim := installed(t, `Exim version ([\d.]+)`, "exim4", "-bV")
	want := map[uint16]snapshot.Service{
		22:    {Name: "ssh", Product: "OpenSSH", Version: opensshVersion(t), Info: "protocol 2.0"},
		80:    {Name: "http", Product: "nginx", Version: nginx},
		443:   {Name: "http", Product: "nginx", Version: nginx, Tunnel: "ssl"},
		6379:  {Name: "redis", Product: "Redis key-value store", Version: installed(t, `v=([\d.]+)`, "redis-server", "--version")},
		5432:  {Name: "postgresql", Product: "PostgreSQL DB", Version: postgresRange(t)},
		11211: {Name: "memcached", Product: "Memcached", Version: installed(t, `memcached ([\d.]+)`, "memcached", "-V")},
		21:    {Name: "ftp", Product: "ProFTPD"},
		25:    {Name: "smtp", Product: "Exim smtpd", Version: exim},
		587:   {Name: "smtp", Product: "Exim smtpd", Version: exim},
		110:   {Name: "pop3", Product: "Dovecot pop3d"},
		143:   {Name: "imap", Product: "Dovecot imapd"},
		993:   {Name: "imap", Product: "Dovecot imapd", Tunnel: "ssl"},
		995:   {Name: "pop3", Product: "Dovecot pop3d", Tunnel: "ssl"},
		1883:  {Name: "mqtt", Product: "Eclipse Mosquitto", Version: installed(t, `mosquitto version ([\d.]+)`, "mosquitto", "-h")},
		9090:  {Name: "http", Product: "Golang net/http server", Info: "Prometheus " + installed(t, `prometheus, version (\S+)`, "prometheus", "--version")},
		9093:  {Name: "http", Product: "Golang net/http server", Info: "Prometheus Alertmanager " + installed(t, `alertmanager, version (\S+)`, "prometheus-alertmanager", "--version")},
		53:    {Name: "domain", Product: "ISC BIND", Version: installed(t, `BIND (\d+\.\d+\.\d+(?:-[\w.+~]+?)?)-Debian`, "named", "-v")},
	}
	variants := map[string][]string{"embedded": nil}
	if _, err := os.Stat(nmapProbes); err == nil {
		// An operator's full nmap file merged in must not change a verdict.
		variants["with nmap's file"] = []string{nmapProbes}
	}
	for name, files := range variants {
		t.Run(name, func(t *testing.T) { checkLab(t, h, want, files) })
	}
}

func checkLab(t *testing.T, h *lab.Host, want map[uint16]snapshot.Service, probeFiles []string) {
	// Every connection, TLS ones included, bound to the lab's bridge.
	bind, err := netif.New(h.Lab().Interface())
	require.NoError(t, err)
	d, err := New(Options{Intensity: DefaultIntensity, Timeout: 10 * time.Second, ProbeFiles: probeFiles, Bind: bind})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	got := map[uint16]*snapshot.Service{}
	var wg sync.WaitGroup
	for port := range want {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := d.Detect(ctx, h.Addr(), port)
			if err != nil {
				t.Errorf("port %d: %v", port, err)
				return
			}
			mu.Lock()
			got[port] = s
			mu.Unlock()
		}()
	}
	wg.Wait()
	s6, err := d.Detect(ctx, h.Addr6(), 22)
	require.NoError(t, err)
	require.Equal(t, "OpenSSH", s6.Product, "over IPv6")
	for port, w := range want {
		g := got[port]
		if g == nil {
			continue
		}
		t.Logf("%5d %s/%s %q %q %q", port, g.Tunnel, g.Name, g.Product, g.Version, g.Info)
		require.Equal(t, w.Name, g.Name, "port %d", port)
		require.Equal(t, w.Product, g.Product, "port %d", port)
		if w.Product != "Golang net/http server" { // its version is Go's
			require.Equal(t, w.Version, g.Version, "port %d", port)
		}
		require.Equal(t, w.Tunnel, g.Tunnel, "port %d", port)
		if w.Info != "" {
			require.Equal(t, w.Info, g.Info, "port %d", port)
		}
		if w.Tunnel == "ssl" {
			require.NotNil(t, g.Cert, "port %d", port)
			require.Len(t, g.Cert.Fingerprint, 64)
			require.True(t, g.Cert.NotAfter.After(g.Cert.NotBefore))
		}
	}
}
