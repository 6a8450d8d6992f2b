// Package systemd_test checks exposure.service with the tools systemd
// ships: systemd-analyze security must rate it at most 2.5, systemd-analyze
// verify must be clean, and the one capability it grants must be enough for
// the SYN engine (and nothing less would be).
package systemd_test

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
)

const (
	unitFile = "exposure.service"
	// maxExposure is the highest overall exposure level `systemd-analyze
	// security` may give the unit (0 is best, 10 worst).
	maxExposure = 2.5
	// installedBinary is where the unit expects the daemon.
	installedBinary = "/usr/local/bin/exposure"
)

// unit is a parsed unit file: section -> key -> values in file order (a key
// may repeat, as SystemCallFilter= does).
type unit map[string]map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			require.True(t, ok, "%s:%d: not key=value: %q", path, n, line)
			require.NotEmpty(t, section, "%s:%d: key outside a section", path, n)
			u[section][k] = append(u[section][k], v)
		}
	}
	require.NoError(t, sc.Err())
	return u
}

// one returns the single value of a key, failing if it is absent or set
// more than once.
func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	require.Len(t, v, 1, "[%s] %s= must be set exactly once", section, key)
	return v[0]
}

// TestUnitDirectives pins the properties the daemon and the README rely
// on: the ones systemd-analyze does not score (notify, watchdog, reload,
// paths) and the privilege set.
func TestUnitDirectives(t *testing.T) {
	u := readUnit(t, unitFile)
	for _, tc := range []struct {
		key, want string
	}{
		{"Type", "notify"},
		{"NotifyAccess", "main"},
		{"ExecStart", installedBinary + " daemon --config.file=/etc/exposure/exposure.yml --storage.path=/var/lib/exposure/exposure.db"},
		{"ExecReload", "/bin/kill -HUP $MAINPID"},
		{"StateDirectory", "exposure"},
		{"DynamicUser", "yes"},
		{"AmbientCapabilities", "CAP_NET_RAW"},
		{"CapabilityBoundingSet", "CAP_NET_RAW"},
		{"NoNewPrivileges", "yes"},
		{"ProtectSystem", "strict"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
		{"PrivateDevices", "yes"},
		{"RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX AF_NETLINK"},
		{"SystemCallArchitectures", "native"},
		{"UMask", "0077"},
		{"RestartPreventExitStatus", "2"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			require.Equal(t, tc.want, u.one(t, "Service", tc.key))
		})
	}
	// The daemon pings at half the interval; a very short one would let a
	// long commit trip it, none would leave a hung scheduler running.
	// systemd spells minutes "min"; Go spells them "m".
	wd, err := time.ParseDuration(strings.ReplaceAll(u.one(t, "Service", "WatchdogSec"), "min", "m"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, wd, 30*time.Second)
	require.Contains(t, u["Service"]["SystemCallFilter"], "@system-service")
	require.Equal(t, []string{"multi-user.target"}, u["Install"]["WantedBy"])
}

var overallRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9]+(?:\.[0-9]+)?)`)

// parseOverall extracts the overall exposure level from the output of
// `systemd-analyze security UNIT`.
func parseOverall(out string) (float64, bool) {
	m := overallRE.FindStringSubmatch(out)
	if m == nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(m[1], 64)
	return f, err == nil
}

func TestParseOverall(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want float64
		ok   bool
	}{
		{"✓ UMask= ...\n\n→ Overall exposure level for exposure.service: 1.5 OK 🙂\n", 1.5, true},
		{"→ Overall exposure level for a.service: 9.6 UNSAFE 😨", 9.6, true},
		{"→ Overall exposure level for a.service: 10 UNSAFE", 10, true},
		{"Failed to load unit", 0, false},
	} {
		got, ok := parseOverall(tc.out)
		require.Equal(t, tc.ok, ok, tc.out)
		require.InDelta(t, tc.want, got, 1e-9, tc.out)
	}
}

func TestLabSystemdSecurity(t *testing.T) {
	lab.RequireBinary(t, "systemd-analyze")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// The file must be named like a service for the offline analysis.
	out, err := exec.CommandContext(ctx, "systemd-analyze", "security", "--offline=yes", "--no-pager", unitFile).CombinedOutput()
	require.NoError(t, err, "%s", out)
	level, ok := parseOverall(string(out))
	require.True(t, ok, "no overall exposure level in:\n%s", out)
	t.Logf("systemd-analyze security --offline=yes %s: overall exposure level %.1f", unitFile, level)
	require.LessOrEqual(t, level, maxExposure, "%s", out)
}

// TestLabSystemdVerify runs `systemd-analyze verify` on a copy of the unit
// whose binary path points at a freshly built daemon (verify insists that
// the ExecStart program exists and is executable). Any output counts as a
// finding, but for what it says of other units: verify loads the units ours
// pulls in (multi-user.target's wants), and a package installed on the
// machine (freeradius' MemoryLimit=) is not ours to fix.
func TestLabSystemdVerify(t *testing.T) {
	lab.RequireBinary(t, "systemd-analyze", "go")
	dir := t.TempDir()
	bin := lab.BuildExposure(t)
	b, err := os.ReadFile(unitFile)
	require.NoError(t, err)
	require.Contains(t, string(b), installedBinary)
	unitCopy := filepath.Join(dir, unitFile)
	require.NoError(t, os.WriteFile(unitCopy, []byte(strings.ReplaceAll(string(b), installedBinary, bin)), 0o644))

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemd-analyze", "verify", "--no-pager", unitCopy).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var findings []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		if f, _, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(f, "/") && f != unitCopy {
			t.Logf("about another unit: %s", line)
			continue
		}
		findings = append(findings, line)
	}
	require.Empty(t, findings, "systemd-analyze verify findings")
}

// TestLabSystemdCapabilities runs a SYN scan of a loopback listener the way
// the unit runs the daemon as far as credentials go: an unprivileged user,
// no new privileges, and exactly the unit's AmbientCapabilities= in the
// bounding, inheritable and ambient sets. It must find the port; with no
// capability at all the same scan must fail, which shows the grant is
// needed and not just harmless.
func TestLabSystemdCapabilities(t *testing.T) {
	lab.RequireBinary(t, "setpriv", "go")
	u := readUnit(t, unitFile)
	caps := strings.Fields(u.one(t, "Service", "AmbientCapabilities"))
	require.Equal(t, caps, strings.Fields(u.one(t, "Service", "CapabilityBoundingSet")))
	var set []string
	for _, c := range caps {
		set = append(set, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}

	// BuildExposure's directory lets the unprivileged user execute the
	// binary; the scan runs in a directory it may enter too.
	bin := lab.BuildExposure(t)
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)

	scan := func(capSet string) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		c := "-all" + capSet
		cmd := exec.CommandContext(ctx, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			"--no-new-privs", "--inh-caps="+c, "--ambient-caps="+c, "--bounding-set="+c,
			bin, "scan", "--engine", "syn", "--format", "json", "-p", port, "127.0.0.1")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := scan("," + strings.Join(set, ","))
	require.NoError(t, err, "%s", out)
	require.Regexp(t, `"port":\s*`+port+`,\s*"protocol":\s*"tcp",\s*"state":\s*"open"`, out)

	out, err = scan("")
	require.Error(t, err, "a SYN scan without CAP_NET_RAW succeeded:\n%s", out)
	require.Contains(t, out, "operation not permitted")
}
