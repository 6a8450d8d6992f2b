package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// RequiredEnv is the environment variable that turns a missing lab
// prerequisite from a skip into a test failure.
const RequiredEnv = "EXPOSURE_LAB"

// Require skips the test unless the lab can run: not in -short mode, running
// as root, with ip and iptables installed. When EXPOSURE_LAB=required a
// missing prerequisite fails the test instead; -short always skips, since it
// asks for no lab.
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("lab: skipped in -short mode")
	}
	if reason := missing(); reason != "" {
		skipOrFail(t, reason)
	}
}

// RequireBinary is Require plus a check that every named program is
// installed. Names are looked up in PATH, /usr/sbin, /sbin and PostgreSQL's
// versioned bin directory.
func RequireBinary(t testing.TB, names ...string) {
	t.Helper()
	Require(t)
	requireBinaries(t, names)
}

func requireBinaries(t testing.TB, names []string) {
	t.Helper()
	var absent []string
	for _, n := range names {
		if _, err := lookPath(n); err != nil {
			absent = append(absent, n)
		}
	}
	if len(absent) > 0 {
		skipOrFail(t, fmt.Sprintf("lab: missing program(s) %s (run .ci/install-deps as root)", strings.Join(absent, ", ")))
	}
}

// RequireDaemon is RequireBinary for everything daemon d needs.
func RequireDaemon(t testing.TB, d Daemon) {
	t.Helper()
	RequireBinary(t, d.Binaries...)
}

func skipOrFail(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(RequiredEnv) == "required" {
		t.Fatalf("%s (%s=required)", reason, RequiredEnv)
	}
	t.Skip(reason)
}

// missing says why the lab cannot run here, or "" if it can. It is the
// non-testing part of Require, also used by Open.
func missing() string {
	if os.Geteuid() != 0 {
		return "lab: needs root (network namespaces, veth, iptables)"
	}
	for _, n := range []string{"ip", "iptables", "ip6tables"} {
		if _, err := lookPath(n); err != nil {
			return fmt.Sprintf("lab: missing program %s (run .ci/install-deps as root)", n)
		}
	}
	return ""
}

// lookPath finds a program in PATH or in the sbin and PostgreSQL directories
// that a non-login root shell may lack in PATH.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dirs := []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"}
	pg, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(pg))) // newest major first
	dirs = append(dirs, pg...)
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("look up %s: %w", name, exec.ErrNotFound)
}
