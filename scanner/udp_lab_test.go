package scanner

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// udpDropped is the port the lab host's firewall drops in the UDP tests.
const udpDropped = 4000

// TestLabUDPStates scans real UDP daemons (lab.UDPDaemons: named, snmpd,
// tftpd, memcached, ntpsec, freeradius, openvpn, rpcbind, nmbd, krb5kdc,
// charon, coturn) over IPv4 and IPv6, on nmap's top 1,000 UDP ports plus
// their ports, with one port dropped by iptables: every daemon port with a
// socket that datagrams to the address reach (ss -lun) is open, tftpd's
// included (it answers from a port of its own), every open port has such a
// socket, a port with one is never closed, and the dropped port ends
// open|filtered. Then again with 5% random loss: open stays exact.
func TestLabUDPStates(t *testing.T) {
	l := lab.New(t)
	h := l.AddHost("udp")
	ds := lab.StartUDP(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	_, err := h.Exec(ctx, "iptables", "-A", "INPUT", "-p", "udp", "--dport", fmt.Sprint(udpDropped), "-j", "DROP")
	require.NoError(t, err)
	_, err = h.Exec(ctx, "ip6tables", "-A", "INPUT", "-p", "udp", "--dport", fmt.Sprint(udpDropped), "-j", "DROP")
	require.NoError(t, err)
	var want []uint16
	for _, d := range ds {
		want = append(want, d.UDPPorts...)
	}
	ports := fmt.Sprintf("udp-top:1000,U:%d", udpDropped)
	for _, p := range want {
		ports += fmt.Sprintf(",U:%d", p)
	}
	u, err := NewUDP(UDPOptions{Limiter: rate.NewLimiter(labRate, labRate/100), Bind: bindTo(t, l.Interface())})
	require.NoError(t, err)
	check := func(name string) {
		for _, addr := range []netip.Addr{h.Addr(), h.Addr6()} {
			listening, err := h.ListeningUDPOn(ctx, addr)
			require.NoError(t, err)
			states := udpLabSweep(t, u, addr, ports)
			for _, p := range want {
				if !listening[p] {
					continue // nmbd and tftpd: IPv4 only
				}
				require.Equal(t, snapshot.StateOpen, states[p], "%s: %v port %d/udp (a daemon answers there)", name, addr, p)
			}
			for p, s := range states {
				if s == snapshot.StateOpen {
					require.True(t, listening[p], "%s: %v port %d/udp open without a socket", name, addr, p)
				}
				if s == snapshot.StateClosed {
					require.False(t, listening[p], "%s: %v port %d/udp closed with a socket bound", name, addr, p)
				}
			}
			require.Equal(t, snapshot.StateOpenFiltered, states[udpDropped], "%s: %v dropped port", name, addr)
		}
	}
	check("clean")
	require.NoError(t, h.SetLoss(ctx, 0.05))
	check("5% loss")
}

// udpLabSweep scans addr's UDP ports and returns each port's state.
func udpLabSweep(t *testing.T, e Engine, addr netip.Addr, ports string) map[uint16]string {
	t.Helper()
	ps, err := spec.ParsePortSpec(ports)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	states := map[uint16]string{}
	start := time.Now()
	order := spec.NewOrder(spec.AddrSetOf(addr), ps.UDP, spec.OrderOptions{})
	st, err := e.Scan(ctx, Job{Pairs: order, Retries: 2}, func(r Result) { states[r.Port] = r.State })
	require.NoError(t, err)
	require.Len(t, states, ps.UDP.Len())
	t.Logf("udp %v: %d ports in %v: %+v", addr, ps.UDP.Len(), time.Since(start).Round(time.Millisecond), st)
	return states
}
