package snapshot

import (
	"encoding/json"
	"strings"
	"testing"
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
