package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestHelpStopsThere checks that --help prints usage and never runs the
// command: `exposure daemon --help` must not start a daemon.
func TestHelpStopsThere(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "Commands:"},
		{[]string{"version", "--help"}, "usage: exposure version"},
		{[]string{"daemon", "--help"}, "--web.listen-address"},
		{[]string{"help", "scan"}, "usage: exposure scan"},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		require.Equal(t, 0, code, "%v: stderr %s", tc.args, errb.String())
		require.Contains(t, out.String(), tc.want, "%v", tc.args)
		require.NotContains(t, out.String(), "exposure, version", "%v ran the command", tc.args)
		require.Empty(t, errb.String(), "%v", tc.args)
	}
}

func TestUnknownCommandIsUsageError(t *testing.T) {
	var out, errb bytes.Buffer
	require.Equal(t, 2, run([]string{"scna"}, &out, &errb))
	require.Contains(t, errb.String(), "scna")
}
