package spec

import (
	"errors"
	"testing"
)

func TestParsePortSpec(t *testing.T) {
	for _, tc := range []struct {
		in       string
		tcp, udp string
	}{
		{"22,80", "22,80", ""},
		{"T:22,80,U:53,161", "22,80", "53,161"},
		{"U:53,T:22", "22", "53"},
		{"u:1-3,t:-2", "1-2", "1-3"},
		{"U:-", "", "1-65535"},
		{"udp-top:5", "", "123,137-138,161,631"},
		{"U:53,top:2", "23,80", "53"},
		{"udp-top:1,top:1,8080", "80,8080", "631"},
	} {
		got, err := ParsePortSpec(tc.in)
		if err != nil {
			t.Fatalf("ParsePortSpec(%q): %v", tc.in, err)
		}
		if got.TCP.String() != tc.tcp || got.UDP.String() != tc.udp {
			t.Errorf("ParsePortSpec(%q) = tcp %q udp %q, want tcp %q udp %q", tc.in, got.TCP, got.UDP, tc.tcp, tc.udp)
		}
		back, err := ParsePortSpec(got.String())
		if err != nil || !back.TCP.Equal(got.TCP) || !back.UDP.Equal(got.UDP) {
			t.Errorf("ParsePortSpec(%q).String() = %q does not parse back (%v)", tc.in, got.String(), err)
		}
	}
}

func TestParsePortSpecErrors(t *testing.T) {
	for _, tc := range []struct{ in, value, reason string }{
		{"", "", reasonEmptyPorts},
		{"U:", "U:", reasonEmptyElement},
		{"T:22,U:70000", "U:70000", reasonPortRange},
		{"udp-top:0", "udp-top:0", reasonUDPTop},
		{"U:udp-top:1001", "U:udp-top:1001", reasonUDPTop},
		{"X:22", "X:22", reasonNotPort},
		{"U:9-3", "U:9-3", reasonEndBefore},
	} {
		_, err := ParsePortSpec(tc.in)
		var e *Error
		if !errors.As(err, &e) || e.Value != tc.value || e.Reason != tc.reason {
			t.Errorf("ParsePortSpec(%q) error = %v, want value %q reason %q", tc.in, err, tc.value, tc.reason)
		}
	}
}

func TestTopUDPPorts(t *testing.T) {
	top := TopUDPPorts(MaxTopUDP)
	seen := map[uint16]bool{}
	for _, p := range top {
		if p == 0 || seen[p] {
			t.Fatalf("topUDP has port %d twice or zero", p)
		}
		seen[p] = true
	}
	if len(top) != 1000 || top[0] != 631 || top[1] != 161 {
		t.Errorf("TopUDPPorts starts %v (len %d), want 631, 161, ... (1000)", top[:2], len(top))
	}
}
