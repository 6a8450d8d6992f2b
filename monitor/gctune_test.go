package monitor

import (
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"testing"

	"github.com/stretchr/testify/require"
)

func gogc(t *testing.T) int {
	t.Helper()
	s := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}}
	rtmetrics.Read(s)
	return int(s[0].Value.Uint64())
}

// TestGCTuner: the collector's target is the idle one while no scan runs,
// the busy one from the first scan's start to the last one's end, and the
// daemon's own at the end; GOGC set by the operator is left alone.
func TestGCTuner(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })

	t.Setenv("GOGC", "80")
	require.Nil(t, newGCTuner(), "GOGC set: no tuning")
	require.Equal(t, 100, gogc(t))

	require.NoError(t, os.Unsetenv("GOGC")) // t.Setenv restores it after the test
	g := newGCTuner()
	require.NotNil(t, g)
	require.Equal(t, idleGCPercent, gogc(t), "idle at start")
	g.scanStarted()
	require.Equal(t, 100, gogc(t))
	g.scanStarted()
	g.scanEnded()
	require.Equal(t, 100, gogc(t), "one scan still runs")
	g.scanEnded()
	require.Equal(t, idleGCPercent, gogc(t), "idle again")
	g.restore()
	require.Equal(t, 100, gogc(t))
}
