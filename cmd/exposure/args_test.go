package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPreparse(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		want  []string
		notes int
		err   string
	}{
		// Values kingpin would take for flags.
		{args: []string{"scan", "--rate", "-5", "h"}, want: []string{"scan", "--rate=-5", "h"}},
		{args: []string{"scan", "--retries", "-1", "--version-intensity", "-2", "h"}, want: []string{"scan", "--retries=-1", "--version-intensity=-2", "h"}},
		{args: []string{"scan", "-p", "-", "h"}, want: []string{"scan", "-p-", "h"}},
		{args: []string{"scan", "-p", "-1024", "h"}, want: []string{"scan", "-p-1024", "h"}},
		{args: []string{"history", "--since", "-5d"}, want: []string{"history", "--since=-5d"}},
		{args: []string{"scan", "-p", "22", "--rate=-5", "h"}, want: []string{"scan", "-p", "22", "--rate=-5", "h"}},
		// A flag's value is never an nmap option, nor the command.
		{args: []string{"scan", "-e", "-sV", "h"}, want: []string{"scan", "-e", "-sV", "h"}},
		{args: []string{"--log.level", "debug", "scan", "-sV", "h"}, want: []string{"--log.level", "debug", "scan", "--sV", "h"}},
		// nmap habits on scan.
		{args: []string{"scan", "-sV", "h"}, want: []string{"scan", "--sV", "h"}},
		{args: []string{"scan", "-sS", "h"}, want: []string{"scan", "--engine=syn", "h"}},
		{args: []string{"scan", "-sT", "h"}, want: []string{"scan", "--engine=connect", "h"}},
		{args: []string{"scan", "-n", "-Pn", "h"}, want: []string{"scan", "-n", "h"}, notes: 1},
		{args: []string{"scan", "-T4", "-T5", "-T3", "h"}, want: []string{"scan", "h"}, notes: 3},
		{args: []string{"scan", "--top-ports", "100", "h"}, want: []string{"scan", "--ports=top:100", "h"}},
		{args: []string{"scan", "--top-ports=10", "h"}, want: []string{"scan", "--ports=top:10", "h"}},
		{args: []string{"scan", "--top-ports"}, err: "--top-ports: needs a number of ports"},
		{args: []string{"scan", "-oX", "out.xml", "h"}, want: []string{"scan", "--output.xml=out.xml", "h"}},
		{args: []string{"scan", "-oXout.xml", "h"}, want: []string{"scan", "--output.xml=out.xml", "h"}},
		{args: []string{"scan", "-oX"}, err: "-oX: needs a file name"},
		{args: []string{"scan", "-oA", "base", "h"}, err: "use -oX FILE (nmap XML)"},
		{args: []string{"scan", "-oN", "out.txt", "h"}, err: "-oN: exposure prints its normal output on stdout; use --format text and redirect it"},
		{args: []string{"scan", "-oG", "out", "h"}, err: "-oG: grepable output is not supported; use --format json"},
		{args: []string{"scan", "-T2", "h"}, err: "-T2: nmap's slow timing templates are not supported; use --rate PPS"},
		{args: []string{"scan", "-T0", "h"}, err: "use --rate PPS"},
		{args: []string{"scan", "-sU", "h"}, err: "-sU: UDP ports are named in the port spec"},
		{args: []string{"scan", "-sF", "h"}, err: "--engine syn"},
		{args: []string{"scan", "-O", "h"}, err: "-O: OS detection is not supported"},
		{args: []string{"scan", "-A", "h"}, err: "use --sV for version detection"},
		// Only scan speaks nmap, and nothing after "--" is touched.
		{args: []string{"show", "-sV"}, want: []string{"show", "-sV"}},
		{args: []string{"scan", "--", "-sV"}, want: []string{"scan", "--", "-sV"}},
	} {
		app, _, _ := newApp()
		got, notes, err := preparse(app, tc.args)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, "%v", tc.args)
			require.ErrorAs(t, err, new(usageError), "%v", tc.args)
			continue
		}
		require.NoError(t, err, "%v", tc.args)
		require.Equal(t, tc.want, got, "%v", tc.args)
		require.Len(t, notes, tc.notes, "%v: %q", tc.args, notes)
	}
}

// TestNumericFlagsTakeNegatives: a negative value reaches the flag's own
// check, which names it (kingpin said "expected argument").
func TestNumericFlagsTakeNegatives(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"scan", "--rate", "-5", "127.0.0.1"}, "exposure scan: bad --rate -5: must be 0 (no limit) or positive\n"},
		{[]string{"scan", "--retries", "-1", "127.0.0.1"}, "exposure scan: bad --retries -1: must be between 0 and 10\n"},
		{[]string{"scan", "--version-intensity", "-3", "127.0.0.1"}, "exposure scan: bad --version-intensity -3: must be between 0 and 9\n"},
		{[]string{"history", "--since", "-5d"}, "exposure history: --since \"-5d\": want a positive duration such as 24h or 7d\n"},
		{[]string{"show", "--target", "x", "--at", "-36h"}, "exposure show: --at \"-36h\": want an RFC 3339 time or a duration ago such as 36h\n"},
	} {
		code, out, errs := runCLI(t, tc.args...)
		require.Equal(t, 2, code, "%v: %s", tc.args, errs)
		require.Equal(t, tc.want, errs, "%v", tc.args)
		require.Empty(t, out, "%v", tc.args)
	}
}

// TestNmapHabitsOnTheCommandLine runs exposure scan as an nmap user types
// it (loopback only).
func TestNmapHabitsOnTheCommandLine(t *testing.T) {
	code, out, errs := runCLI(t, "scan", "-sT", "-sV", "-Pn", "-n", "-T4", "-p", "1", "127.0.0.1")
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "exposure: note: -Pn: exposure has no ping phase")
	require.Contains(t, errs, "exposure: note: -T4: ignored")
	require.Contains(t, out, "Exposure done: 1 host up, 0 open ports")

	file := filepath.Join(t.TempDir(), "scan.xml")
	code, out, errs = runCLI(t, "scan", "-n", "-p", "1-20", "-oX", file, "127.0.0.1")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "Exposure done: 1 host up")
	doc, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Contains(t, string(doc), `<scaninfo type="`)
	require.Contains(t, string(doc), `<extraports state="closed" count="20">`)
}
