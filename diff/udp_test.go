package diff

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// udpScan is scan i of one host 198.18.0.2 with the given ports: "53/udp
// open", "161/udp open|filtered", "22/tcp open".
func udpScan(i int, ports ...snapshot.Port) *snapshot.Snapshot {
	at := t0.Add(time.Duration(i) * 10 * time.Minute)
	return &snapshot.Snapshot{Target: "dns", ID: snapshot.NewID("dns", at), StartedAt: at, FinishedAt: at.Add(time.Second),
		Complete: true, Quality: snapshot.Quality{ProbesSent: 10, Replies: 10},
		Hosts: []snapshot.Host{{Address: "198.18.0.2", State: snapshot.HostUp, Ports: ports}}}
}

func port(n uint16, proto, state string) snapshot.Port {
	return snapshot.Port{Port: n, Protocol: proto, State: state}
}

// protoProber answers per protocol and records what it was asked.
type protoProber struct {
	answers map[string]map[spec.Pair]string // by protocol, the same every round
	asked   map[string][]spec.Pair
	rounds  int
}

func (p *protoProber) Probe(_ context.Context, proto string, pairs []spec.Pair) (map[spec.Pair]string, error) {
	if p.asked == nil {
		p.asked = map[string][]spec.Pair{}
	}
	p.asked[proto] = append(p.asked[proto], pairs...)
	p.rounds++
	return p.answers[proto], nil
}

// TestUDPOpenFiltered: a UDP port that answers nothing (open|filtered) is
// not open: it never yields port_opened, and an open UDP port that turns
// closed or open|filtered is port_closed only when re-probes over UDP
// confirm it; 53/tcp and 53/udp are different ports.
func TestUDPOpenFiltered(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.2")
	p53 := spec.Pair{Addr: a, Port: 53}
	const (
		open = snapshot.StateOpen
		of   = snapshot.StateOpenFiltered
	)
	base := Diff(nil, udpScan(1, port(22, "tcp", open), port(53, "tcp", open), port(53, "udp", open), port(161, "udp", of)), nil, Policy{})
	require.Empty(t, base.Changes)

	// open|filtered ports come and go without a word.
	s2 := udpScan(2, port(22, "tcp", open), port(53, "tcp", open), port(53, "udp", open), port(69, "udp", of))
	r2 := Diff(nil, s2, base.State, Policy{})
	require.Empty(t, r2.Changes)
	require.Empty(t, r2.Pending, "open|filtered is not open: no port_opened to confirm")

	// 53/udp goes silent while 53/tcp stays open: a closure of 53/udp to
	// confirm over UDP.
	s3 := udpScan(3, port(22, "tcp", open), port(53, "tcp", open), port(53, "udp", of))
	r3 := Diff(nil, s3, r2.State, Policy{})
	require.Len(t, r3.Pending, 1)
	require.Equal(t, "udp", r3.Pending[0].Protocol)
	require.Equal(t, p53, r3.Pending[0].Pair)

	// The re-probes hear 53/udp answer: no closure, and the TCP answer for
	// the same pair is never asked for nor counted.
	pr := &protoProber{answers: map[string]map[spec.Pair]string{"udp": {p53: open}, "tcp": {p53: snapshot.StateClosed}}}
	got, err := Confirm(context.Background(), pr, r3.Pending, 2, 3)
	require.NoError(t, err)
	require.Empty(t, got, "a UDP port that answers the re-probes is not closed")
	require.Equal(t, []spec.Pair{p53, p53}, pr.asked["udp"], "two agreeing rounds decide")
	require.Empty(t, pr.asked["tcp"])

	// Still silent next scan, and silent to the re-probes: port_closed
	// 53/udp, confirmed.
	r4 := Diff(nil, udpScan(4, port(22, "tcp", open), port(53, "tcp", open), port(53, "udp", of)), r3.State, Policy{})
	require.Len(t, r4.Pending, 1)
	pr = &protoProber{answers: map[string]map[spec.Pair]string{"udp": {p53: of}, "tcp": {p53: open}}}
	got, err = Confirm(context.Background(), pr, r4.Pending, 2, 3)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, "port_closed 198.18.0.2 53/udp before=open", formatChange(got[0]))

	// Closed (port unreachable) after open|filtered: nothing to report.
	r5 := Diff(nil, udpScan(5, port(22, "tcp", open), port(53, "tcp", open)), r4.State, Policy{})
	require.Empty(t, r5.Changes)
	require.Empty(t, r5.Pending)
}

// TestUDPPolicy: expect lists name protocols; never_open U:161 is about
// 161/udp, not 161/tcp, and a bare 53 in open allows 53/tcp only.
func TestUDPPolicy(t *testing.T) {
	p := Policy{
		Open:          []spec.ProtoPort{spec.TCP(22), spec.UDP(53), spec.UDP(123)},
		ExpectOpenSet: true,
		NeverOpen:     []spec.ProtoPort{spec.UDP(161)},
		Versions:      map[spec.ProtoPort]string{spec.UDP(53): ">= 9.18"},
	}
	sn := udpScan(1, port(22, "tcp", "open"), port(53, "tcp", "open"), port(161, "tcp", "open"), port(161, "udp", "open"),
		port(123, "udp", "open|filtered"),
		snapshot.Port{Port: 53, Protocol: "udp", State: "open", Service: &snapshot.Service{Name: "domain", Product: "ISC BIND", Version: "9.16.1"}})
	sn.Sort()
	var got []string
	for _, c := range Evaluate(sn, p) {
		got = append(got, formatChange(c))
	}
	require.Equal(t, []string{
		`unexpected_open 198.18.0.2 53/tcp after=open "port 53/tcp is not in expect.open"`,
		`version_policy 198.18.0.2 53/udp after=open(domain/ISC BIND/9.16.1) "ISC BIND \"9.16.1\" does not satisfy \">= 9.18\""`,
		`unexpected_open 198.18.0.2 161/tcp after=open "port 161/tcp is not in expect.open"`,
		`forbidden_open 198.18.0.2 161/udp after=open "port 161/udp is in expect.never_open"`,
		`expected_missing 123/udp "port 123/udp of expect.open is open on no host"`,
	}, got)
}
