package diff

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"9.2p1", "9.6p1", -1},
		{"9.6p1", "9.2p1", 1},
		{"9.2p1", "9.2p1", 0},
		{"9.2p1 Debian 2+deb12u10", "9.0", 1},
		{"8.9p1 Ubuntu 3ubuntu0.6", "9.0", -1},
		{"9.2p1 Debian 2+deb12u3", "9.2p1 Debian 2+deb12u10", -1},
		{"9.2p1-2+deb12u1", "9.2p1-2", 1},
		{"1.0~rc1", "1.0", -1},
		{"1.0", "1.0+b1", -1},
		{"1:1.0", "2.0", 1},
		{"2.4.10", "2.4.9", 1},
		{"v1.4.0", "1.4.0", 0},
		{"1.4.0-rc1", "1.4.0", -1},
		{"1.4.0-rc.2", "1.4.0-rc.10", -1},
		{"1.22.1", "1.24.0", -1},
		{"1.0a", "1.0", 1},
		{"1.0", "1.0.0", -1},
		{"", "1", -1},
	} {
		require.Equal(t, tc.want, CompareVersions(tc.a, tc.b), "%q vs %q", tc.a, tc.b)
		require.Equal(t, -tc.want, CompareVersions(tc.b, tc.a), "%q vs %q", tc.b, tc.a)
	}
}

func FuzzCompareVersions(f *testing.F) {
	for _, s := range []string{"9.2p1", "1:2.0~rc1-3+deb12u1", "1.4.0-rc1", "v2", ""} {
		f.Add(s, "9.6p1")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if CompareVersions(a, b) != -CompareVersions(b, a) {
			t.Fatalf("not antisymmetric: %q %q", a, b)
		}
		if CompareVersions(a, a) != 0 {
			t.Fatalf("%q != itself", a)
		}
	})
}

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		rule, version string
		allows        bool
	}{
		{">= 9.0", "9.2p1 Debian 2+deb12u10", true},
		{">= 9.0", "8.9p1", false},
		{">=9.6p1", "9.2p1", false},
		{"> 1.22, < 2", "1.24.0", true},
		{"> 1.22, < 2", "2.0.1", false},
		{"= 2.4.57", "2.4.57", true},
		{"== 2.4.57", "2.4.58", false},
		{"!= 7.4", "7.4", false},
		{"<= 1.0", "1.0~beta", true},
	} {
		r, err := ParseRule(tc.rule)
		require.NoError(t, err, tc.rule)
		require.Equal(t, tc.allows, r.Allows(tc.version), "%s %s", tc.version, tc.rule)
	}
	for _, bad := range []string{"9.0", ">=", ">= 9,", "", "~> 1.0"} {
		_, err := ParseRule(bad)
		require.Error(t, err, bad)
	}
	require.Error(t, Policy{Versions: map[spec.ProtoPort]string{spec.TCP(22): "nine"}}.Validate())
	require.NoError(t, Policy{Versions: map[spec.ProtoPort]string{spec.TCP(22): ">= 9"}}.Validate())
}

func TestVersionRuleErrors(t *testing.T) {
	for _, in := range []string{">= 9.0", "<2.4", "= 1.2.3", "== 1.2.3", "!= 8.9p1", "  > 1.18.0 ", "<= 2:1.2-3", ">= 2.4, < 3"} {
		_, err := ParseRule(in)
		require.NoError(t, err, in)
	}
	for in, reason := range map[string]string{
		"":          "empty version rule",
		"9.0":       "version rule must start with an operator: >=, >, <=, <, = or !=",
		">=":        `no version after ">="`,
		"=> 9":      "one operator and one version per term (separate terms with commas)",
		">= 9 < 10": "one operator and one version per term (separate terms with commas)",
		">= 9,":     "empty term between commas",
		">= beta":   `"beta" is not a version (digits, letters and . + _ ~ : -)`,
		">= 9.0 x":  `"9.0 x" is not a version (digits, letters and . + _ ~ : -)`,
	} {
		_, err := ParseRule(in)
		require.EqualError(t, err, reason, in)
	}
}

func TestEvaluate(t *testing.T) {
	sn := buildSnapshot(t, 1, step{Hosts: map[string][]string{
		"198.18.0.2": {"22/ssh/OpenSSH/8.4p1", "23", "80"},
		"198.18.0.7": {"1-900"},
	}})
	p := Policy{Open: tcp(22, 443), ExpectOpenSet: true, NeverOpen: tcp(23), Versions: map[spec.ProtoPort]string{spec.TCP(22): ">= 9.0"}, PortsProbed: 1000}
	var got []string
	for _, c := range Evaluate(sn, p) {
		require.Equal(t, sn.ID, c.Snapshot)
		got = append(got, formatChange(c))
	}
	require.Equal(t, []string{
		`version_policy 198.18.0.2 22/tcp after=open(ssh/OpenSSH/8.4p1) "OpenSSH \"8.4p1\" does not satisfy \">= 9.0\""`,
		`forbidden_open 198.18.0.2 23/tcp after=open "port 23/tcp is in expect.never_open"`,
		`unexpected_open 198.18.0.2 80/tcp after=open "port 80/tcp is not in expect.open"`,
		`expected_missing 443/tcp "port 443/tcp of expect.open is open on no host"`,
		`all_ports_open 198.18.0.7 "900 of 1000 probed ports answer open (SYN proxy or tarpit?)"`,
	}, got)

	sn.Complete = false
	for _, c := range Evaluate(sn, p) {
		require.NotEqual(t, snapshot.ExpectedMissing, c.Kind, "a partial scan proves nothing missing")
	}

	// Without PortsProbed the share is estimated from the quality figures.
	sn.Quality.Closed = 100
	found := false
	for _, c := range Evaluate(sn, Policy{}) {
		found = found || c.Kind == snapshot.AllPortsOpen
	}
	require.True(t, found)
	sn.Quality.Closed = 0
	for _, c := range Evaluate(sn, Policy{}) {
		require.NotEqual(t, snapshot.AllPortsOpen, c.Kind, "no figures, no guess")
	}
}

type countingProber struct {
	calls   int
	asked   [][]spec.Pair
	answers []map[spec.Pair]string // per round
	err     error
}

func (c *countingProber) Probe(_ context.Context, _ string, pairs []spec.Pair) (map[spec.Pair]string, error) {
	c.asked = append(c.asked, pairs)
	c.calls++
	if c.err != nil {
		return nil, c.err
	}
	return c.answers[c.calls-1], nil
}

func TestConfirmVotes(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.2")
	prev := buildSnapshot(t, 1, step{Hosts: map[string][]string{"198.18.0.2": {"22", "80"}}})
	cur := buildSnapshot(t, 2, step{Hosts: map[string][]string{"198.18.0.2": {"22", "443", "8080"}}})
	base := Diff(nil, prev, nil, Policy{})
	res := Diff(prev, cur, base.State, Policy{})
	require.Len(t, res.Pending, 3) // 80 closed, 443 and 8080 opened
	p80, p443, p8080 := spec.Pair{Addr: a, Port: 80}, spec.Pair{Addr: a, Port: 443}, spec.Pair{Addr: a, Port: 8080}

	pr := &countingProber{answers: []map[spec.Pair]string{
		{p80: "closed", p443: "open", p8080: "closed"},
		{p80: "open", p443: "open", p8080: "open"},
		{p80: "filtered", p443: "closed", p8080: "closed"},
	}}
	got, err := Confirm(context.Background(), pr, res.Pending, 2, 3)
	require.NoError(t, err)
	require.Equal(t, 3, pr.calls)
	for _, asked := range pr.asked {
		require.ElementsMatch(t, []spec.Pair{p80, p443, p8080}, asked, "exactly the pending pairs")
	}
	var kinds []string
	for _, c := range got {
		kinds = append(kinds, formatChange(c))
	}
	require.Equal(t, []string{"port_closed 198.18.0.2 80/tcp before=open", "port_opened 198.18.0.2 443/tcp after=open"}, kinds)

	// 8080 was not confirmed: the next identical scan proposes it again;
	// the confirmed ones are part of the view now.
	next := buildSnapshot(t, 3, step{Hosts: map[string][]string{"198.18.0.2": {"22", "443", "8080"}}})
	res2 := Diff(cur, next, res.State, Policy{})
	require.Len(t, res2.Pending, 1)
	require.Equal(t, uint16(8080), res2.Pending[0].Pair.Port)

	// Rounds stop as soon as every pair is decided.
	pr = &countingProber{answers: []map[spec.Pair]string{{p8080: "open"}, {p8080: "open"}, {p8080: "open"}}}
	got, err = Confirm(context.Background(), pr, res2.Pending, 2, 3)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, 2, pr.calls)

	// Errors record nothing.
	res3 := Diff(next, buildSnapshot(t, 4, step{Hosts: map[string][]string{"198.18.0.2": {"22"}}}), res2.State, Policy{})
	require.Len(t, res3.Pending, 2)
	_, err = Confirm(context.Background(), &countingProber{err: errors.New("raw socket gone")}, res3.Pending, 1, 1)
	require.ErrorContains(t, err, "raw socket gone")
	_, err = Confirm(context.Background(), pr, res3.Pending, 3, 2)
	require.Error(t, err)
	_, err = Confirm(context.Background(), nil, res3.Pending, 1, 2)
	require.Error(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Confirm(ctx, pr, res3.Pending, 1, 2)
	require.ErrorIs(t, err, context.Canceled)
	b, err := res3.State.MarshalBinary()
	require.NoError(t, err)
	st, err := UnmarshalState(b)
	require.NoError(t, err)
	require.True(t, st.Ports["198.18.0.2|443/tcp"].Open, "failed confirmations changed nothing")

	// 0 of 0 accepts without probing.
	got, err = Confirm(context.Background(), nil, res3.Pending, 0, 0)
	require.NoError(t, err)
	require.Len(t, got, 2)
}

func TestDiffDoesNotModifyItsInputs(t *testing.T) {
	prev := buildSnapshot(t, 1, step{Hosts: map[string][]string{"198.18.0.2": {"22/ssh/OpenSSH/9.2p1"}}})
	cur := buildSnapshot(t, 2, step{Hosts: map[string][]string{"198.18.0.2": {"22/ssh/OpenSSH/9.6p1", "80"}}})
	st := Diff(nil, prev, nil, Policy{}).State
	before, err := st.MarshalBinary()
	require.NoError(t, err)
	res := Diff(prev, cur, st, Policy{})
	_, err = Confirm(context.Background(), nil, res.Pending, 0, 0)
	require.NoError(t, err)
	after, err := st.MarshalBinary()
	require.NoError(t, err)
	require.Equal(t, string(before), string(after))
	newer, err := res.State.MarshalBinary()
	require.NoError(t, err)
	require.NotEqual(t, string(before), string(newer))
}

func TestStateEncoding(t *testing.T) {
	st, err := UnmarshalState(nil)
	require.NoError(t, err)
	require.False(t, st.Baselined)
	_, err = UnmarshalState([]byte("{"))
	require.Error(t, err)
	_, err = UnmarshalState([]byte(`{"v":99}`))
	require.ErrorContains(t, err, "state format 99")

	// An unchanged scan leaves the encoded state byte for byte identical,
	// so the store can skip rewriting it.
	sn := buildSnapshot(t, 1, step{Hosts: map[string][]string{"198.18.0.2": {"22/ssh/OpenSSH/9.2p1", "80"}, "198.18.0.3": {"443"}}})
	res := Diff(nil, sn, nil, Policy{NeverOpen: tcp(80)})
	b1, err := res.State.MarshalBinary()
	require.NoError(t, err)
	res = Diff(sn, buildSnapshot(t, 2, step{Hosts: map[string][]string{"198.18.0.3": {"443"}, "198.18.0.2": {"80", "22/ssh/OpenSSH/9.2p1"}}}), res.State, Policy{NeverOpen: tcp(80)})
	require.Empty(t, res.Changes)
	b2, err := res.State.MarshalBinary()
	require.NoError(t, err)
	require.Equal(t, string(b1), string(b2))
}

// TestUnchangedScansYieldNothing feeds 100 scans of the same network, each
// with hosts and ports shuffled, new ids and times, noisy quality figures
// and some services missing (-sV timeouts), and expects no change at all.
func TestUnchangedScansYieldNothing(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	policy := Policy{Open: tcp(22, 80, 443), ExpectOpenSet: true, NeverOpen: tcp(23), Versions: map[spec.ProtoPort]string{spec.TCP(22): ">= 9.0"}, PortsProbed: 1000}
	base := &snapshot.Snapshot{Target: "dmz", Complete: true}
	for h := range 40 {
		host := snapshot.Host{Address: netip.AddrFrom4([4]byte{198, 18, 1, byte(h + 1)}).String(), State: snapshot.HostUp}
		for _, p := range []uint16{22, 80, 443, 23, 8080, uint16(10000 + h)} {
			if rng.IntN(3) == 0 {
				continue
			}
			pt := snapshot.Port{Port: p, Protocol: "tcp", State: snapshot.StateOpen}
			if p == 22 {
				pt.Service = &snapshot.Service{Name: "ssh", Product: "OpenSSH", Version: "8.4p1"}
			}
			host.Ports = append(host.Ports, pt)
		}
		base.Hosts = append(base.Hosts, host)
	}
	// one tarpit host
	tarpit := snapshot.Host{Address: "198.18.1.200", State: snapshot.HostUp}
	for p := 1; p <= 1000; p++ {
		tarpit.Ports = append(tarpit.Ports, snapshot.Port{Port: uint16(p), Protocol: "tcp", State: snapshot.StateOpen})
	}
	base.Hosts = append(base.Hosts, tarpit)

	mk := func(i int) *snapshot.Snapshot {
		at := t0.Add(time.Duration(i) * time.Hour).Add(time.Duration(rng.IntN(1e9)))
		s := &snapshot.Snapshot{Target: "dmz", ID: snapshot.NewID("dmz", at), StartedAt: at, FinishedAt: at.Add(time.Minute),
			Complete: true, Quality: snapshot.Quality{ProbesSent: 40000 + uint64(rng.IntN(500)), Replies: uint64(rng.IntN(40000)), Retransmits: uint64(rng.IntN(90))}}
		for _, h := range base.Hosts {
			h.Ports = append([]snapshot.Port(nil), h.Ports...)
			for j := range h.Ports {
				if i > 0 && h.Ports[j].Service != nil && rng.IntN(4) == 0 {
					h.Ports[j].Service = nil // -sV timed out this time
				}
			}
			rng.Shuffle(len(h.Ports), func(a, b int) { h.Ports[a], h.Ports[b] = h.Ports[b], h.Ports[a] })
			s.Hosts = append(s.Hosts, h)
		}
		rng.Shuffle(len(s.Hosts), func(a, b int) { s.Hosts[a], s.Hosts[b] = s.Hosts[b], s.Hosts[a] })
		return s
	}
	first := mk(0)
	res := Diff(nil, first, nil, policy)
	require.NotEmpty(t, res.Changes, "the baseline reports its policy verdicts")
	st, prev := res.State, first
	for i := 1; i <= 100; i++ {
		cur := mk(i)
		res := Diff(prev, cur, st, policy)
		require.Empty(t, res.Changes, "scan %d", i)
		require.Empty(t, res.Pending, "scan %d", i)
		b, err := res.State.MarshalBinary()
		require.NoError(t, err)
		st, err = UnmarshalState(b)
		require.NoError(t, err)
		prev = cur
	}
}

func FuzzDiffNeverPanics(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{8, 7, 6, 5})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		mk := func(i int, bs []byte) *snapshot.Snapshot {
			at := t0.Add(time.Duration(i) * time.Minute)
			s := &snapshot.Snapshot{Target: "t", ID: snapshot.NewID("t", at), StartedAt: at, Complete: len(bs)%3 != 0}
			for j := 0; j+1 < len(bs); j += 2 {
				addr := netip.AddrFrom4([4]byte{198, 18, 0, bs[j] % 4}).String()
				s.Hosts = append(s.Hosts, snapshot.Host{Address: addr, State: snapshot.HostUp,
					Ports: []snapshot.Port{{Port: uint16(bs[j+1] % 8), Protocol: "tcp", State: snapshot.StateOpen}}})
			}
			return s
		}
		p := Policy{NeverOpen: tcp(3), Open: tcp(1, 2), ExpectOpenSet: true, FlapThreshold: 2, FlapWindow: 3 * time.Minute}
		r1 := Diff(nil, mk(1, a), nil, p)
		r2 := Diff(mk(1, a), mk(2, b), r1.State, p)
		if _, err := Confirm(context.Background(), nil, r2.Pending, 0, 0); err != nil {
			t.Fatal(err)
		}
		r3 := Diff(mk(2, b), mk(3, b), r2.State, p)
		if mk(2, b).Complete && len(r3.Pending)+len(r3.Changes) != 0 {
			t.Fatalf("repeating a confirmed scan changed something: %v %v", r3.Changes, r3.Pending)
		}
	})
}

func TestNonAddressHostsAreFinal(t *testing.T) {
	prev := buildSnapshot(t, 1, step{Hosts: map[string][]string{"legacy-host": {"22"}}})
	cur := buildSnapshot(t, 2, step{Hosts: map[string][]string{"legacy-host": {"22", "80"}}})
	res := Diff(prev, cur, Diff(nil, prev, nil, Policy{}).State, Policy{})
	require.Empty(t, res.Pending)
	require.Len(t, res.Changes, 1)
	require.Equal(t, snapshot.PortOpened, res.Changes[0].Kind)
	res = Diff(cur, cur, res.State, Policy{})
	require.Empty(t, res.Changes, "recorded in the view")
}

// TestFlapSettings checks that FlapThreshold and FlapWindow decide when a
// port opening and closing every scan (10 minutes apart) is held.
func TestFlapSettings(t *testing.T) {
	alternating := make([]step, 0, 8)
	for i := range 8 {
		ports := []string{"22"}
		if i%2 == 1 {
			ports = append(ports, "9000")
		}
		alternating = append(alternating, step{Hosts: map[string][]string{"198.18.0.2": ports}})
	}
	tests := []struct {
		name      string
		policy    Policy
		wantFlaps string // the first flapping report, "" for none
		wantLines int    // port_opened and port_closed reports
	}{
		{"threshold 2", Policy{FlapThreshold: 2, FlapWindow: time.Hour}, "port_closed 198.18.0.2 9000/tcp before=open flaps=2", 2},
		{"threshold 3", Policy{FlapThreshold: 3, FlapWindow: time.Hour}, "port_opened 198.18.0.2 9000/tcp after=open flaps=3", 3},
		{"threshold 4 (default)", Policy{}, "port_closed 198.18.0.2 9000/tcp before=open flaps=4", 4},
		{"window shorter than two scans", Policy{FlapThreshold: 3, FlapWindow: 15 * time.Minute}, "", 7},
		{"threshold 8 never reached", Policy{FlapThreshold: 8, FlapWindow: time.Hour}, "", 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := runScenario(t, scenario{Policy: tt.policy, Steps: alternating})
			reports, firstFlap := 0, ""
			for _, line := range strings.Split(out, "\n") {
				c, ok := strings.CutPrefix(strings.TrimSpace(line), "confirmed ")
				if !ok {
					continue
				}
				reports++
				if firstFlap == "" && strings.Contains(c, "flaps=") {
					firstFlap = c
				}
			}
			require.Equal(t, tt.wantFlaps, firstFlap, out)
			require.Equal(t, tt.wantLines, reports, out)
		})
	}
}

// TestChangesCarryTheFullService checks that the before of a change is the
// service as it was reported, info, tunnel, CPE and certificate included,
// also when the state went through MarshalBinary between the scans (as in
// the daemon).
func TestChangesCarryTheFullService(t *testing.T) {
	full := func(version string) *snapshot.Service {
		return &snapshot.Service{Name: "http", Product: "nginx", Version: version, Info: "Debian", Tunnel: "ssl",
			CPE:  []string{"cpe:/a:igor_sysoev:nginx:" + version},
			Cert: &snapshot.Cert{Subject: "CN=www", Issuer: "CN=ca", SANs: []string{"www.example.test"}, Fingerprint: "ab12"}}
	}
	scan := func(i int, svc *snapshot.Service) *snapshot.Snapshot {
		sn := buildSnapshot(t, i, step{Hosts: map[string][]string{"198.18.0.2": {"22"}}})
		if svc != nil {
			sn.Hosts[0].Ports = append(sn.Hosts[0].Ports, snapshot.Port{Port: 443, Protocol: "tcp", State: snapshot.StateOpen, Service: svc})
		}
		return sn
	}
	roundTrip := func(st *State) *State {
		b, err := st.MarshalBinary()
		require.NoError(t, err)
		st, err = UnmarshalState(b)
		require.NoError(t, err)
		return st
	}
	s1, s2, s3 := scan(1, full("1.22.1")), scan(2, full("1.24.0")), scan(3, nil)
	st := roundTrip(Diff(nil, s1, nil, Policy{}).State)

	res := Diff(s1, s2, st, Policy{})
	require.Len(t, res.Changes, 1)
	require.Equal(t, snapshot.VersionChanged, res.Changes[0].Kind)
	require.Equal(t, full("1.22.1"), res.Changes[0].Before.Service)
	require.Equal(t, full("1.24.0"), res.Changes[0].After.Service)
	// The state keeps a copy: changing the scan afterwards changes nothing.
	s2.Hosts[0].Ports[1].Service.CPE[0] = "changed"
	s2.Hosts[0].Ports[1].Service.Cert.SANs[0] = "changed"

	for _, st := range []*State{res.State, roundTrip(res.State)} {
		res := Diff(s2, s3, st, Policy{})
		confirmed, err := Confirm(context.Background(), nil, res.Pending, 0, 0)
		require.NoError(t, err)
		require.Len(t, confirmed, 1)
		require.Equal(t, snapshot.PortClosed, confirmed[0].Kind)
		require.Equal(t, full("1.24.0"), confirmed[0].Before.Service)
	}
}

// TestStateFormat1 reads a state written before the state kept the whole
// service: its facts still compare, so no change is invented.
func TestStateFormat1(t *testing.T) {
	st, err := UnmarshalState([]byte(`{"v":1,"b":true,"h":{"198.18.0.2":{}},"p":{"198.18.0.2|22/tcp":{"o":true,"n":"ssh","pr":"OpenSSH","v":"9.2p1","x":"ab12"}}}`))
	require.NoError(t, err)
	prev := buildSnapshot(t, 1, step{Hosts: map[string][]string{"198.18.0.2": {"22/ssh/OpenSSH/9.2p1/ab12"}}})
	res := Diff(prev, buildSnapshot(t, 2, step{Hosts: map[string][]string{"198.18.0.2": {"22/ssh/OpenSSH/9.2p1/ab12"}}}), st, Policy{})
	require.Empty(t, res.Changes)
	require.Empty(t, res.Pending)
	res = Diff(prev, buildSnapshot(t, 2, step{Hosts: map[string][]string{"198.18.0.2": {"22/ssh/OpenSSH/9.6p1/ab12"}}}), st, Policy{})
	require.Len(t, res.Changes, 1)
	require.Equal(t, "ssh OpenSSH 9.2p1", res.Changes[0].Before.Service.Describe())
	require.Equal(t, "ab12", res.Changes[0].Before.Service.Cert.Fingerprint)
	b, err := res.State.MarshalBinary()
	require.NoError(t, err)
	require.Contains(t, string(b), `"v":3`)
}

// TestStateServiceTable: a state stores each distinct service once, the
// ports referring to it, and reads back equal, the ports sharing one copy;
// a format 2 state (the service inline per port) still reads, and a port
// referring past the table is an error.
func TestStateServiceTable(t *testing.T) {
	hosts := map[string][]string{}
	for i := range 200 {
		hosts[fmt.Sprintf("198.18.0.%d", i+1)] = []string{"22/ssh/OpenSSH/9.2p1", "80/http/nginx/1.22.1"}
	}
	res := Diff(nil, buildSnapshot(t, 1, step{Hosts: hosts}), nil, Policy{})
	b, err := res.State.MarshalBinary()
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(b), `"OpenSSH"`), "the service is stored once")
	require.Equal(t, 1, strings.Count(string(b), `"nginx"`))
	st, err := UnmarshalState(b)
	require.NoError(t, err)
	require.Len(t, st.Ports, 400)
	a, c := st.Ports["198.18.0.1|22/tcp"], st.Ports["198.18.0.2|22/tcp"]
	require.Equal(t, "ssh OpenSSH 9.2p1", a.Service.Describe())
	require.Same(t, a.Service, c.Service, "ports share the decoded service")
	require.Equal(t, "http nginx 1.22.1", st.Ports["198.18.0.200|80/tcp"].Service.Describe())
	for range 5 { // the table's order is not the map's: the same state, the same bytes
		again, err := st.MarshalBinary()
		require.NoError(t, err)
		require.Equal(t, string(b), string(again))
	}

	v2, err := UnmarshalState([]byte(`{"v":2,"b":true,"h":{"198.18.0.2":{}},"p":{"198.18.0.2|22/tcp":{"o":true,"s":{"name":"ssh","product":"OpenSSH","version":"9.2p1","info":"","tunnel":"","cpe":[]}}}}`))
	require.NoError(t, err)
	require.Equal(t, "ssh OpenSSH 9.2p1", v2.Ports["198.18.0.2|22/tcp"].Service.Describe())

	_, err = UnmarshalState([]byte(`{"v":3,"b":true,"p":{"198.18.0.2|22/tcp":{"o":true,"si":2}},"sv":[{"name":"ssh"}]}`))
	require.ErrorContains(t, err, "service 2 of 1")
}

// tcp is a policy list of TCP ports.
func tcp(ports ...uint16) []spec.ProtoPort {
	out := make([]spec.ProtoPort, len(ports))
	for i, p := range ports {
		out[i] = spec.TCP(p)
	}
	return out
}

// TestDiffOwned: DiffOwned reports what Diff does and keeps the state it
// was handed as the result's, where Diff leaves its state unchanged.
func TestDiffOwned(t *testing.T) {
	s1 := buildSnapshot(t, 1, step{Hosts: map[string][]string{"198.18.0.2": {"22/ssh/OpenSSH/9.2p1"}}})
	s2 := buildSnapshot(t, 2, step{Hosts: map[string][]string{"198.18.0.2": {"22/ssh/OpenSSH/9.6p1"}}})
	base := Diff(nil, s1, nil, Policy{}).State
	b, err := base.MarshalBinary()
	require.NoError(t, err)
	a, err := UnmarshalState(b)
	require.NoError(t, err)
	o, err := UnmarshalState(b)
	require.NoError(t, err)
	copied, owned := Diff(s1, s2, a, Policy{}), DiffOwned(s1, s2, o, Policy{})
	require.Equal(t, copied.Changes, owned.Changes)
	require.Len(t, owned.Changes, 1)
	require.Same(t, o, owned.State)
	require.NotSame(t, a, copied.State)
	require.Equal(t, "ssh OpenSSH 9.2p1", a.Ports["198.18.0.2|22/tcp"].Service.Describe(), "Diff left its state as it was")
	require.Equal(t, "ssh OpenSSH 9.6p1", o.Ports["198.18.0.2|22/tcp"].Service.Describe())
}
