package main

import (
	"bytes"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDaemonRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	badCfg := filepath.Join(dir, "bad.yml")
	require.NoError(t, os.WriteFile(badCfg, []byte("targets:\n  - name: a\n    hosts: [127.0.0.1]\n    ports: \"80-70\"\n"), 0o600))
	badWeb := filepath.Join(dir, "web.yml")
	require.NoError(t, os.WriteFile(badWeb, []byte("tls_server_config:\n  cert_file: /nonexistent.crt\n"), 0o600))
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	db := filepath.Join(dir, "x.db")

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad config", []string{"daemon", "--config.file", badCfg, "--storage.path", db, "--web.listen-address", "127.0.0.1:0"},
			2, `bad.yml:4: targets[0].ports: "80-70": range end before start`},
		{"missing config", []string{"daemon", "--config.file", filepath.Join(dir, "nope.yml"), "--storage.path", db}, 2, "nope.yml"},
		{"bad web config", []string{"daemon", "--web.config.file", badWeb, "--storage.path", db, "--web.listen-address", "127.0.0.1:0"},
			2, "web config"},
		{"address in use", []string{"daemon", "--storage.path", db, "--web.listen-address", busy.Addr().String()}, 1, "address already in use"},
		{"unknown flag", []string{"daemon", "--bogus"}, 2, "bogus"},
		{"bad memory limit", []string{"daemon", "--memory.limit", "lots"}, 2, "memory.limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			require.Equal(t, tt.code, code, "stderr: %s", stderr.String())
			require.Contains(t, stderr.String(), tt.want)
			require.Empty(t, stdout.String())
		})
	}
}

// TestDaemonMemoryLimit: --memory.limit becomes the runtime's soft memory
// limit, unless GOMEMLIMIT is set.
func TestDaemonMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	missing := filepath.Join(t.TempDir(), "nope.yml")
	limitAfter := func(args ...string) int64 {
		debug.SetMemoryLimit(math.MaxInt64)
		var stdout, stderr bytes.Buffer
		require.Equal(t, 2, run(append([]string{"daemon", "--config.file", missing}, args...), &stdout, &stderr), stderr.String())
		return debug.SetMemoryLimit(-1)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		t.Skip("GOMEMLIMIT is set, so the flag does not apply")
	}
	require.Equal(t, int64(100<<20), limitAfter(), "the default")
	require.Equal(t, int64(64<<20), limitAfter("--memory.limit", "64MiB"))
	require.Equal(t, int64(math.MaxInt64), limitAfter("--memory.limit", "0"), "0 is off")
	t.Setenv("GOMEMLIMIT", "1GiB")
	require.Equal(t, int64(math.MaxInt64), limitAfter("--memory.limit", "64MiB"), "GOMEMLIMIT wins")
}
