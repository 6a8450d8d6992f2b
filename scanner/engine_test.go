package scanner

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/scanner/spec"
)

func TestNewEngine(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))

	e, err := NewEngine(KindConnect, EngineOptions{Logger: logger})
	require.NoError(t, err)
	require.Equal(t, KindConnect, e.Name())

	_, err = NewEngine("udp", EngineOptions{Logger: logger})
	require.ErrorContains(t, err, `unknown engine "udp"`)

	e, err = NewEngine(KindAuto, EngineOptions{Limiter: rate.NewLimiter(1000, 10), Logger: logger})
	require.NoError(t, err)
	want := KindConnect
	if os.Geteuid() == 0 {
		want = KindSYN
	}
	require.Equal(t, want, e.Name())
	require.Equal(t, 1, strings.Count(logs.String(), "\n"), "auto logs exactly one line: %s", logs.String())
	require.Contains(t, strings.ToLower(logs.String()), "using the "+want+" engine")

	if os.Geteuid() == 0 {
		s, err := NewEngine(KindSYN, EngineOptions{Logger: logger})
		require.NoError(t, err)
		lo, hi, err := ephemeralRange()
		require.NoError(t, err)
		sp := s.(*SYN).SourcePort()
		require.True(t, sp < lo || sp > hi, "source port %d inside the ephemeral range", sp)
	}
}

// TestSYNCancel checks that ctx stops a scan of a silent destination early
// and that the result says so.
func TestSYNCancel(t *testing.T) {
	s := newSYNForTest(t)
	// 127.0.0.1 answers everything; to have probes outstanding, scan many
	// ports with a tiny rate so the scan cannot finish in time.
	slow, err := NewSYN(SYNOptions{Limiter: rate.NewLimiter(100, 1), SourcePort: s.SourcePort()})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	ports, err := spec.ParsePorts("1-1000")
	require.NoError(t, err)
	order := spec.NewOrder(spec.AddrSetOf(netip.MustParseAddr("127.0.0.1")), ports, spec.OrderOptions{})
	n := 0
	start := time.Now()
	_, err = slow.Scan(ctx, Job{Pairs: order, Retries: 1}, func(Result) { n++ })
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 2*time.Second)
	require.Less(t, n, 1000)
}
