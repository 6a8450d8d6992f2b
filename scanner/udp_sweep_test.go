package scanner

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// TestSweepSpecLoopback sweeps a TCP listener and a UDP echo service on
// loopback with one spec, the connect engine for TCP and the UDP engine
// for UDP: one snapshot, one host, both ports with their protocol. A spec
// with UDP ports and no UDP engine is ErrNoUDPEngine with the TCP part as
// an incomplete snapshot.
func TestSweepSpecLoopback(t *testing.T) {
	limiter := rate.NewLimiter(rate.Inf, 0)
	u, err := NewUDP(UDPOptions{Limiter: limiter, InitialRTO: 50 * time.Millisecond, MinRTO: 10 * time.Millisecond, MaxRTO: 100 * time.Millisecond})
	if err != nil {
		t.Skipf("no raw sockets: %v", err)
	}
	tcpPort := listenLoopback(t, "127.0.0.1", 1)[0]
	echo, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { echo.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = echo.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	udpPort := uint16(echo.LocalAddr().(*net.UDPAddr).Port)
	ports, err := spec.ParsePortSpec(strconv.Itoa(int(tcpPort)) + ",U:" + strconv.Itoa(int(udpPort)))
	require.NoError(t, err)
	targets, err := spec.ParseTargets([]string{"127.0.0.1"}, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	o := SweepOptions{Target: "lo", Retries: 1}

	snap, err := SweepSpec(ctx, Engines{TCP: NewConnect(ConnectOptions{Limiter: limiter}), UDP: u}, targets, ports, o)
	require.NoError(t, err)
	require.True(t, snap.Complete)
	require.Len(t, snap.Hosts, 1)
	require.ElementsMatch(t, []snapshot.Port{
		{Port: tcpPort, Protocol: "tcp", State: snapshot.StateOpen},
		{Port: udpPort, Protocol: "udp", State: snapshot.StateOpen},
	}, snap.Hosts[0].Ports)
	require.Equal(t, uint64(2), snap.Quality.Replies, "the figures of both sweeps")

	snap, err = SweepSpec(ctx, Engines{TCP: NewConnect(ConnectOptions{Limiter: limiter})}, targets, ports, o)
	require.True(t, errors.Is(err, ErrNoUDPEngine), "%v", err)
	require.NotNil(t, snap)
	require.False(t, snap.Complete, "the UDP ports were not scanned")
}
