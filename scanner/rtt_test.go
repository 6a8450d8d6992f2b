package scanner

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRTTEstimator(t *testing.T) {
	e := newRTTEstimator(time.Second, 50*time.Millisecond, 1500*time.Millisecond)
	require.Equal(t, time.Second, e.timeout(1), "initial timeout before any sample")
	require.Equal(t, time.Second, e.timeout(2))
	require.Equal(t, 1500*time.Millisecond, e.timeout(3), "backoff, bounded by max")

	for range 20 {
		e.sample(100 * time.Microsecond)
	}
	require.Equal(t, 50*time.Millisecond, e.timeout(1), "a LAN round trip is bounded by min")
	require.Equal(t, 50*time.Millisecond, e.timeout(2))
	require.Equal(t, 100*time.Millisecond, e.timeout(3))
	require.Equal(t, 100*time.Millisecond, e.timeout(7), "backoff bounded: loss must not stall the scan")

	for range 50 {
		e.sample(300 * time.Millisecond)
	}
	require.InDelta(t, float64(300*time.Millisecond), float64(e.timeout(1)), float64(30*time.Millisecond), "converges to a stable RTT")

	jit := newRTTEstimator(time.Second, time.Millisecond, 10*time.Second)
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		jit.sample(100*time.Millisecond + time.Duration(r.IntN(100))*time.Millisecond)
	}
	require.Greater(t, jit.timeout(1), 200*time.Millisecond, "variance widens the timeout above the mean")
}

func TestPickSourcePort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		lo, hi uint16
		ok     bool
	}{
		{32768, 60999, true},
		{1024, 65535, false},
		{10000, 65535, true},
		{1024, 65500, false},
	}
	for _, tt := range tests {
		for range 100 {
			p, err := pickSourcePort(tt.lo, tt.hi, r)
			if !tt.ok {
				require.Error(t, err)
				break
			}
			require.NoError(t, err)
			require.True(t, p < tt.lo || p > tt.hi, "port %d inside %d-%d", p, tt.lo, tt.hi)
			require.GreaterOrEqual(t, p, uint16(1024))
		}
	}
	lo, hi, err := ephemeralRange()
	require.NoError(t, err)
	require.LessOrEqual(t, lo, hi)
}
