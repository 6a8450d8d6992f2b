package snapshot

import (
	"time"

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

// TestServiceEqual: every field of a service and of its certificate
// counts, and a nil CPE list is not an empty one.
func TestServiceEqual(t *testing.T) {
	base := func() *Service {
		return &Service{Name: "http", Product: "nginx", Version: "1.22.1", Info: "i", Tunnel: "ssl", CPE: []string{"cpe:/a:x"},
			Cert: &Cert{Subject: "CN=a", Issuer: "CN=b", SANs: []string{"a"}, NotAfter: time.Unix(2e9, 0), Fingerprint: "ab"}}
	}
	require.True(t, base().Equal(base()))
	require.True(t, (*Service)(nil).Equal(nil))
	require.False(t, base().Equal(nil))
	for name, change := range map[string]func(*Service){
		"name": func(s *Service) { s.Name = "https" }, "product": func(s *Service) { s.Product = "Apache" },
		"version": func(s *Service) { s.Version = "1.24" }, "info": func(s *Service) { s.Info = "" },
		"tunnel": func(s *Service) { s.Tunnel = "" }, "incomplete": func(s *Service) { s.Incomplete = true },
		"fingerprint": func(s *Service) { s.Fingerprint = "NULL:x" }, "cpe": func(s *Service) { s.CPE[0] = "cpe:/a:y" },
		"cpe nil": func(s *Service) { s.CPE = nil }, "cert": func(s *Service) { s.Cert = nil },
		"cert sha": func(s *Service) { s.Cert.Fingerprint = "cd" }, "cert sans": func(s *Service) { s.Cert.SANs = nil },
		"not after": func(s *Service) { s.Cert.NotAfter = time.Unix(3e9, 0) }, "subject": func(s *Service) { s.Cert.Subject = "" },
	} {
		s := base()
		change(s)
		require.False(t, base().Equal(s), name)
		require.False(t, s.Equal(base()), name)
	}
	empty := base()
	empty.CPE = []string{}
	nilCPE := base()
	nilCPE.CPE = nil
	require.False(t, empty.Equal(nilCPE))
}
