package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
)

// TestLabctlScale brings a /23 scale lab up through labctl scale: its JSON
// names the prefix, the veth and the gateway, and the truth file lists
// exactly 80 on every address and 22 on the even ones.
func TestLabctlScale(t *testing.T) {
	lab.Require(t)
	ctx, cancel := context.WithCancel(context.Background())
	truth := filepath.Join(t.TempDir(), "truth")
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	// A failing check still waits for the teardown.
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		done <- runScale(ctx, scaleOptions{bits: 23, truth: truth}, pw, slog.New(slog.NewTextHandler(io.Discard, nil)))
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	var out ScaleOutput
	require.NoError(t, json.Unmarshal([]byte(line), &out))
	require.Equal(t, 23, out.Prefix.Bits())
	require.Equal(t, uint64(512+256), out.Open)
	require.NotEmpty(t, out.Interface)
	require.False(t, out.Prefix.Contains(out.Gateway))

	b, err := os.ReadFile(truth)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, int(out.Open))
	for _, l := range lines {
		f := strings.Fields(l)
		require.Len(t, f, 2, l)
		a := netip.MustParseAddr(f[0])
		require.True(t, out.Prefix.Contains(a), l)
		if f[1] == "22" {
			require.Zero(t, a.As4()[3]%2, "22 only on even addresses: %s", l)
		} else {
			require.Equal(t, "80", f[1], l)
		}
	}
	cancel()
	require.NoError(t, <-done)
	done <- nil // for the cleanup
	_, err = os.Stat(truth)
	require.ErrorIs(t, err, os.ErrNotExist, "the truth goes with the lab")
}
