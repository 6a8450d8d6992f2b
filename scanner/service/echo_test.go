package service

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/testnet"
)

func TestEchoes(t *testing.T) {
	tests := []struct {
		payload, resp string
		want          bool
	}{
		{"GET / HTTP/1.0\r\n\r\n", "GET / HTTP/1.0\r\n\r\n", true},
		{"GET / HTTP/1.0\r\n\r\n", "GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n", true},
		{"GET / HTTP/1.0\r\n\r\n", "GET / HT", true},
		{"GET / HTTP/1.0\r\n\r\n", "HTTP/1.1 400 Bad Request\r\n", false},
		{"\x00exposure\x00", "\x00", false}, // rlogin's genuine one-byte answer
		{"", "SSH-2.0-OpenSSH_9.6\r\n", false},
		{"HELP\r\n", "", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, echoes([]byte(tt.payload), []byte(tt.resp)), "%q -> %q", tt.payload, tt.resp)
	}
}

// TestDetectSmallServices runs the RFC 862-864 services and a service that
// answers nothing that matches over loopback: an echo must be named echo,
// never after the probe it echoed.
func TestDetectSmallServices(t *testing.T) {
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity, Timeout: 2 * time.Second})
	echo := func(c net.Conn) { _, _ = io.Copy(c, c) }
	chargen := func(c net.Conn) {
		var line [74]byte
		for i := 0; ; i++ {
			for j := range 72 {
				line[j] = byte(' ' + (i+j)%95)
			}
			line[72], line[73] = '\r', '\n'
			if _, err := c.Write(line[:]); err != nil {
				return
			}
		}
	}
	tests := []struct {
		name        string
		handle      func(net.Conn)
		service     string
		fingerprint string
	}{
		{"echo", echo, EchoService, ""},
		{"chargen", chargen, "chargen", ""},
		{"discard", idle, "unknown", ""},
		{"unknown banner", func(c net.Conn) { _, _ = io.WriteString(c, "WELCOME\tto the \x01 machine\r\n"); idle(c) },
			"unknown", `NULL:WELCOME\tto the \x01 machine\r\n`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := testnet.Serve(t, listen(t), tt.handle)
			got, err := d.Detect(context.Background(), loopback, port)
			require.NoError(t, err)
			require.Equal(t, tt.service, got.Name)
			require.Empty(t, got.Product)
			require.Equal(t, tt.fingerprint, got.Fingerprint)
		})
	}
}

func TestFingerprintString(t *testing.T) {
	probes := []*Probe{{Name: "NULL"}, {Name: "GetRequest"}}
	var f fingerprint
	require.Empty(t, f.String(), "nothing answered")
	f.see(outcome{idx: 1, data: []byte("HTTP/1.1 \\ 200\xff")}, probes)
	require.Equal(t, `GetRequest:HTTP/1.1 \\ 200\xff`, f.String())
	f.see(outcome{idx: 0, data: []byte(strings.Repeat("x", 1000))}, probes)
	require.Equal(t, "NULL:"+strings.Repeat("x", maxFingerprint), f.String(), "the NULL probe's banner is preferred, and bounded")
	f.see(outcome{idx: 1, data: []byte("later")}, probes)
	require.True(t, strings.HasPrefix(f.String(), "NULL:"))
}
