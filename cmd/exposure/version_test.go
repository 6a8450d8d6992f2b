package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/version"
	"github.com/stretchr/testify/require"
)

// TestVersionFlagAndCommand: --version works anywhere and prints what the
// version command prints.
func TestVersionFlagAndCommand(t *testing.T) {
	code, want, errs := runCLI(t, "version")
	require.Equal(t, 0, code, errs)
	require.Regexp(t, `^exposure, version \S+ \(branch: .*, revision: .+\)\n  build user: `, want)
	for _, args := range [][]string{{"--version"}, {"scan", "--version"}, {"--log.level", "debug", "--version"}} {
		code, out, errs := runCLI(t, args...)
		require.Equal(t, 0, code, "%v: %s", args, errs)
		require.Equal(t, want, out, "%v", args)
		require.Empty(t, errs, "%v", args)
	}
}

// TestBuildInfoMetric: exposure_build_info carries the link-time version.
func TestBuildInfoMetric(t *testing.T) {
	old := [...]string{version.Version, version.Revision, version.Branch}
	t.Cleanup(func() { version.Version, version.Revision, version.Branch = old[0], old[1], old[2] })
	version.Version, version.Revision, version.Branch = "v9.8.7", "0123abcd", "main"
	require.NoError(t, testutil.GatherAndCompare(newRegistry(), strings.NewReader(`
# HELP exposure_build_info A metric with a constant '1' value labeled by version, revision, branch, goversion from which exposure was built, and the goos and goarch for the build.
# TYPE exposure_build_info gauge
exposure_build_info{branch="main",goarch="`+version.GoArch+`",goos="`+version.GoOS+`",goversion="`+version.GoVersion+`",revision="0123abcd",tags="`+version.GetTags()+`",version="v9.8.7"} 1
`), "exposure_build_info"))
}

// TestMakeBuildStampsVersion builds the binary with `make build` and checks
// that --version names the commit, branch and the build user and date.
func TestMakeBuildStampsVersion(t *testing.T) {
	for _, tool := range []string{"make", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	rev, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "exposure")
	mk := exec.Command("make", "-s", "-C", root, "build", "BIN="+bin)
	mk.Env = append(os.Environ(), "GOFLAGS=") // as a user runs it
	out, err := mk.CombinedOutput()
	require.NoError(t, err, "make build: %s", out)

	got, err := exec.Command(bin, "--version").Output()
	require.NoError(t, err)
	require.Contains(t, string(got), "revision: "+strings.TrimSpace(string(rev))+")")
	require.NotContains(t, string(got), "version dev ")
	require.NotRegexp(t, `(?m)build (user|date): *$`, string(got))
	cmd, err := exec.Command(bin, "version").Output()
	require.NoError(t, err)
	require.Equal(t, string(got), string(cmd))
}
