package scanner

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// TestLabScaleSweep sweeps a /20 scale lab (one namespace answering for
// 4,096 addresses through a gateway route) x 22,80 and must find exactly
// its truth: 80 open everywhere, 22 on the even addresses, every host up.
// The probes go through the TX ring to the gateway's link-layer address
// (one neighbour for the whole prefix).
func TestLabScaleSweep(t *testing.T) {
	s := lab.NewScale(t, 20)
	e, err := NewSYN(SYNOptions{Limiter: rate.NewLimiter(labRate, labRate/100), Bind: bindTo(t, s.Interface())})
	require.NoError(t, err)
	targets, err := spec.ParseTargets([]string{s.Prefix().String()}, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ports := spec.PortsOf(lab.ScalePorts()...)

	start := time.Now()
	r, err := SweepResults(ctx, e, targets, SweepOptions{Target: "scale", Ports: ports, Retries: 2})
	require.NoError(t, err)
	head := r.Header()
	t.Logf("%d addresses x 22,80 in %v: %+v", s.Size(), time.Since(start).Round(time.Millisecond), head.Quality)
	require.True(t, head.Complete)
	require.Equal(t, int(s.Size()), r.HostsUp())
	require.Equal(t, int(s.OpenCount()), r.OpenPorts())
	require.Equal(t, s.Size()-s.OpenCount()/3, head.Quality.Closed, "22 closed on the odd addresses")
	var i uint64
	for h := range r.Hosts() {
		a := netip.MustParseAddr(h.Address)
		require.Equal(t, s.Addr(i), a, "hosts in address order, none missing")
		i++
		require.Equal(t, snapshot.HostUp, h.State)
		var got []uint16
		for _, p := range h.Ports {
			require.Equal(t, snapshot.StateOpen, p.State)
			got = append(got, p.Port)
		}
		var want []uint16
		for _, p := range lab.ScalePorts() {
			if s.Open(a, p) {
				want = append(want, p)
			}
		}
		require.Equal(t, want, got, "%s", a)
	}
	require.Equal(t, s.Size(), i)

	// The engine's own figures: the ring carried the probes (a scan of
	// ringMinProbes pairs or more: ten ports of the /20).
	wide, err := spec.ParsePorts("1-8,22,80")
	require.NoError(t, err)
	open := 0
	st, err := e.Scan(ctx, Job{Pairs: spec.NewOrder(mustResolve(t, targets), wide, spec.OrderOptions{}), Retries: 2}, func(r Result) {
		if r.State == snapshot.StateOpen {
			open++
		}
	})
	require.NoError(t, err)
	require.Equal(t, int(s.OpenCount()), open)
	require.Positive(t, st.RingSent, "probes through the gateway's neighbour entry on the TX ring: %+v", st)
}

func mustResolve(t *testing.T, ts *spec.Targets) *spec.AddrSet {
	t.Helper()
	a, err := ts.Resolve(context.Background(), nil)
	require.NoError(t, err)
	return a
}
