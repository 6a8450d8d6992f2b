package snapshot

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestServiceDescribe(t *testing.T) {
	tests := []struct {
		s    *Service
		want string
	}{
		{nil, ""},
		{&Service{}, ""},
		{&Service{Name: "ssh", Product: "OpenSSH", Version: "9.2p1 Debian 2+deb12u10", Info: "protocol 2.0"},
			"ssh OpenSSH 9.2p1 Debian 2+deb12u10 (protocol 2.0)"},
		{&Service{Name: "http", Product: "nginx", Version: "1.22.1", Tunnel: "ssl"}, "ssl/http nginx 1.22.1"},
		{&Service{Name: "imap", Product: "Dovecot imapd", Tunnel: "ssl", Incomplete: true}, "ssl/imap? Dovecot imapd"},
		{&Service{Name: "unknown", Incomplete: true}, "unknown?"},
		{&Service{Product: "Fake daemon"}, "Fake daemon"},
		{&Service{Info: "no name"}, "(no name)"},
	}
	for _, tt := range tests {
		if got := tt.s.Describe(); got != tt.want {
			t.Errorf("%+v.Describe() = %q, want %q", tt.s, got, tt.want)
		}
	}
}

func TestServiceJSON(t *testing.T) {
	tests := []struct {
		s    Service
		want string
	}{
		{Service{Name: "http"}, `{"name":"http","product":"","version":"","info":"","tunnel":"","cpe":[]}`},
		{Service{Name: "http", CPE: []string{}}, `{"name":"http","product":"","version":"","info":"","tunnel":"","cpe":[]}`},
		{Service{Name: "ssh", Info: "protocol 2.0", CPE: []string{"cpe:/a:openbsd:openssh"}, Incomplete: true},
			`{"name":"ssh","product":"","version":"","info":"protocol 2.0","tunnel":"","cpe":["cpe:/a:openbsd:openssh"],"incomplete":true}`},
	}
	for _, tt := range tests {
		for _, v := range []any{tt.s, &tt.s, Port{Service: &tt.s}} {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("marshal %+v: %v", v, err)
			}
			if got := string(b); !strings.Contains(got, tt.want) {
				t.Errorf("json.Marshal(%T %+v) = %s, want it to hold %s", v, tt.s, got, tt.want)
			}
		}
	}
}

func TestShareServices(t *testing.T) {
	nginx := func() *Service {
		return &Service{Name: "http", Product: "nginx", Version: "1.22.1", CPE: []string{"cpe:/a:f5:nginx:1.22.1"}}
	}
	withCert := nginx()
	withCert.Cert = &Cert{Fingerprint: "ab"}
	noCPE := nginx()
	noCPE.CPE = nil
	s := &Snapshot{Hosts: []Host{
		{Address: "198.18.0.1", Ports: []Port{{Port: 80, Service: nginx()}, {Port: 81, Service: &Service{Name: "http", Product: "nginx", Version: "1.24.0"}}}},
		{Address: "198.18.0.2", Ports: []Port{{Port: 80, Service: nginx()}, {Port: 443, Service: withCert}, {Port: 82, Service: noCPE}, {Port: 22}}},
	}}
	want := &Snapshot{}
	b, _ := json.Marshal(s)
	require.NoError(t, json.Unmarshal(b, want))
	require.Equal(t, 3, s.ShareServices()) // nginx 1.22.1, 1.24.0, and 1.22.1 without a CPE list
	require.Same(t, s.Hosts[0].Ports[0].Service, s.Hosts[1].Ports[0].Service)
	require.NotSame(t, s.Hosts[0].Ports[0].Service, s.Hosts[0].Ports[1].Service)
	require.NotSame(t, s.Hosts[0].Ports[0].Service, s.Hosts[1].Ports[2].Service)
	require.Same(t, withCert, s.Hosts[1].Ports[1].Service, "a service with a certificate is its own")
	got, _ := json.Marshal(s)
	require.JSONEq(t, string(b), string(got), "sharing changes nothing a reader sees")
}
