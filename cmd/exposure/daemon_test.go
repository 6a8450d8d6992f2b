package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
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
