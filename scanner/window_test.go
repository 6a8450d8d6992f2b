package scanner

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/snapshot"
)

// TestWindowRedeadline: probes sent under the initial one-second timeout
// get the measured, much shorter one as soon as the first replies show the
// network is fast.
func TestWindowRedeadline(t *testing.T) {
	var got []Result
	sc := &synScan{
		win:     map[pairKey]*probe{},
		upHosts: newHostSet(),
		est:     newRTTEstimator(time.Second, 20*time.Millisecond, 2*time.Second),
		emit:    func(r Result) { got = append(got, r) },
	}
	sc.deadlineRTO = sc.est.rto
	addr := netip.MustParseAddr("198.18.0.2")
	t0 := time.Now()
	for port := uint16(1); port <= 100; port++ {
		p := &probe{key: pairKey{addr, port}, idx: -1}
		sc.win[p.key] = p
		sc.sent(p, t0)
	}
	require.Equal(t, t0.Add(time.Second), sc.timeouts[0].deadline)

	sc.handle(reply{kind: replyRST, remote: addr, remotePort: 7}, t0.Add(time.Millisecond))
	require.Equal(t, []Result{{Addr: addr, Port: 7, State: snapshot.StateClosed, Reason: "reset", RTT: time.Millisecond}}, got)
	require.Len(t, sc.win, 99)
	require.Len(t, sc.timeouts, 99)
	for _, p := range sc.timeouts {
		require.Equal(t, t0.Add(20*time.Millisecond), p.deadline, "port %d", p.key.port)
	}

	// A duplicate reply changes nothing.
	sc.handle(reply{kind: replySynAck, remote: addr, remotePort: 7}, t0.Add(2*time.Millisecond))
	require.Len(t, got, 1)

	// Expiry hands probes to the retransmit queue, then gives up.
	sc.job.Retries = 1
	sc.expire(t0.Add(20 * time.Millisecond))
	require.Len(t, sc.retx, 99)
	require.Empty(t, sc.timeouts)
	for range 99 {
		p := sc.next()
		require.Equal(t, 1, p.tries)
		sc.sent(p, t0.Add(21*time.Millisecond))
	}
	require.Empty(t, sc.retx)
	sc.expire(t0.Add(time.Second))
	require.Len(t, got, 100)
	require.Equal(t, snapshot.StateFiltered, got[99].State)
	require.Equal(t, "no-response", got[99].Reason)
	require.Empty(t, sc.win)
	require.Len(t, sc.spare, 100, "finished probes are reused")
}
