package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/config"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	defaultFile := filepath.Join(dir, "default.yml")
	require.NoError(t, os.WriteFile(defaultFile, config.DefaultYAML(), 0o600))
	twoErrors := filepath.Join(dir, "two.yml")
	require.NoError(t, os.WriteFile(twoErrors, []byte("targets:\n  - name: web\n    hosts: [127.0.0.1]\n    portz: 80\n    schedule: '@every 0s'\n"), 0o600))

	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		stdout    string // exact, when not empty
		stdoutHas []string
		stderr    string // exact
		stderrHas []string
	}{
		{
			name: "design example",
			args: []string{"check-config", "../../config/testdata/good/design.yml"},
			code: 0,
			stdout: "../../config/testdata/good/design.yml: valid: 1 target, 2 receivers\n" +
				"TARGET  ADDRESSES        PORTS            SCHEDULE      SERVICE DETECTION\n" +
				"dmz     16 (1 hostname)  65535 (1-65535)  */30 * * * *  intensity 7\n",
		},
		{
			name:      "embedded default",
			args:      []string{"check-config", defaultFile},
			code:      0,
			stdoutHas: []string{"valid: 1 target, 1 receiver\n", "localhost  1          1000 (top:1000)  @every 15m  intensity 7\n"},
		},
		{
			name:      "sharded",
			args:      []string{"check-config", "../../config/testdata/good/full.yml"},
			code:      0,
			stdoutHas: []string{"lab.internal_2  131072", "shard 1 of 2 scans 1 of the 2 targets\n"},
		},
		{
			name: "one error",
			args: []string{"check-config", "../../config/testdata/bad/port_range_reversed.yml"},
			code: 2,
			stderr: `../../config/testdata/bad/port_range_reversed.yml:14: targets[2].ports: "80-70": range end before start` + "\n" +
				"exposure check-config: ../../config/testdata/bad/port_range_reversed.yml: invalid configuration: 1 error\n",
		},
		{
			name: "every error",
			args: []string{"check-config", twoErrors},
			code: 2,
			stderr: twoErrors + ":4: targets[0].portz: unknown field, did you mean \"ports\"?\n" +
				twoErrors + `:5: targets[0].schedule: "@every 0s": @every interval must be at least 1s` + "\n" +
				"exposure check-config: " + twoErrors + ": invalid configuration: 2 errors\n",
		},
		{
			name:   "missing file",
			args:   []string{"check-config", filepath.Join(dir, "nope.yml")},
			code:   2,
			stderr: "exposure check-config: read config: open " + filepath.Join(dir, "nope.yml") + ": no such file or directory\n",
		},
		{
			name:      "no path",
			args:      []string{"check-config"},
			code:      2,
			stderrHas: []string{"required argument 'path' not provided"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tc.args, &out, &errb)
			require.Equal(t, tc.code, code, "stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
			if tc.stdout != "" {
				require.Equal(t, tc.stdout, out.String())
			}
			for _, s := range tc.stdoutHas {
				require.Contains(t, out.String(), s)
			}
			if tc.stderr != "" {
				require.Equal(t, tc.stderr, errb.String())
			}
			for _, s := range tc.stderrHas {
				require.Contains(t, errb.String(), s)
			}
			if code == 0 {
				require.Empty(t, errb.String())
			} else {
				require.Empty(t, out.String())
				require.True(t, strings.HasSuffix(errb.String(), "\n"))
			}
		})
	}
}
