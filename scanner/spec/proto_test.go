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

func TestParseProtoPort(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ProtoPort
		str  string
	}{
		{"22", TCP(22), "22"},
		{" T:22 ", TCP(22), "22"},
		{"t:80", TCP(80), "80"},
		{"U:161", UDP(161), "U:161"},
		{"u: 53", UDP(53), "U:53"},
		{"161/udp", UDP(161), "U:161"},
		{"22/TCP", TCP(22), "22"},
	} {
		got, err := ParseProtoPort(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseProtoPort(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		if got.String() != tc.str {
			t.Errorf("ParseProtoPort(%q).String() = %q, want %q", tc.in, got.String(), tc.str)
		}
		if back, err := ParseProtoPort(got.String()); err != nil || back != got {
			t.Errorf("ParseProtoPort(%q) does not read back: %v, %v", got.String(), back, err)
		}
	}
	for _, tc := range []struct{ in, reason string }{
		{"", reasonProtoPort},
		{"U:", reasonProtoPort},
		{"X:22", reasonProtoPort},
		{"22/sctp", reasonProtoPort},
		{"U:1-3", reasonProtoPort},
		{"U:70000", reasonPortRange},
		{"0", reasonPortRange},
	} {
		_, err := ParseProtoPort(tc.in)
		var e *Error
		if !errors.As(err, &e) || e.Value != tc.in || e.Reason != tc.reason {
			t.Errorf("ParseProtoPort(%q) error = %v, want value %q reason %q", tc.in, err, tc.in, tc.reason)
		}
	}
}

func TestPortSpecContains(t *testing.T) {
	ps, err := ParsePortSpec("22,U:53,161")
	if err != nil {
		t.Fatal(err)
	}
	for pp, want := range map[ProtoPort]bool{TCP(22): true, UDP(53): true, UDP(161): true, TCP(53): false, UDP(22): false} {
		if got := ps.Contains(pp); got != want {
			t.Errorf("Contains(%s) = %v, want %v", pp.Label(), got, want)
		}
	}
}
