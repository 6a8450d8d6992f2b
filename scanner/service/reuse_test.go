package service

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/testnet"
)

// TestRecheck detects real loopback services, changes what they answer
// and checks that Recheck keeps a detection exactly while the bytes that
// matched (or the certificate) stay the same.
func TestRecheck(t *testing.T) {
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity})
	certA, certB := selfSigned(t), selfSigned(t)
	date := func() string { return time.Now().Format(time.RFC3339Nano) }
	tests := []struct {
		name string
		// reply answers a connection with the server's version v (0 at
		// detection, 0 or 1 at the re-check).
		reply  func(c net.Conn, v int)
		tls    bool
		change bool
		kept   bool
		// noCheck: the detection leaves no Check (re-detected every scan).
		noCheck bool
	}{
		{name: "banner unchanged", reply: sshBanner, kept: true},
		{name: "banner version changed", reply: sshBanner, change: true},
		{name: "http, same Server line, new Date", reply: nginx(date), kept: true},
		{name: "http, new version", reply: nginx(date), change: true},
		{name: "http, page after the headers, title or not", reply: splitHTTP(false), kept: true},
		{name: "http, page after the headers, new version", reply: splitHTTP(true), change: true},
		{name: "tls certificate unchanged", tls: true, reply: sshBanner, kept: true},
		{name: "tls certificate changed", tls: true, change: true},
		{name: "unknown service", reply: func(c net.Conn, v int) { _, _ = io.WriteString(c, "\x01\x02 nothing "+date()+"\r\n") }, noCheck: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v atomic.Int64
			l := listen(t)
			handle := func(c net.Conn) { tt.reply(c, int(v.Load())) }
			if tt.tls {
				// Version 1 is a new certificate in front of the same
				// service.
				l = tls.NewListener(l, &tls.Config{MinVersion: tls.VersionTLS12,
					GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
						if v.Load() == 1 {
							return &certB, nil
						}
						return &certA, nil
					}})
				handle = func(c net.Conn) {
					if c.(*tls.Conn).Handshake() == nil {
						sshBanner(c, 0)
					}
				}
			}
			port := testnet.Serve(t, l, handle)
			svc, c, err := d.detect(context.Background(), loopback, port)
			require.NoError(t, err)
			if tt.noCheck {
				require.Equal(t, "unknown", svc.Name)
				require.False(t, c.Valid(), "%+v", c)
				require.False(t, d.Recheck(context.Background(), loopback, port, c))
				return
			}
			require.True(t, c.Valid(), "detection of %s left no check", svc.Describe())
			require.Equal(t, tt.tls, c.TLS)
			if tt.change {
				v.Store(1)
			}
			require.Equal(t, tt.kept, d.Recheck(context.Background(), loopback, port, c))
		})
	}

	t.Run("port closed", func(t *testing.T) {
		l := listen(t)
		port := testnet.Serve(t, l, func(c net.Conn) { sshBanner(c, 0) })
		_, c, err := d.detect(context.Background(), loopback, port)
		require.NoError(t, err)
		require.True(t, d.Recheck(context.Background(), loopback, port, c))
		l.Close()
		require.False(t, d.Recheck(context.Background(), loopback, port, c))
	})
}

func sshBanner(c net.Conn, v int) {
	_, _ = io.WriteString(c, []string{"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", "SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n"}[v])
	idle(c)
}

// nginx answers a GET as nginx does, the Server line before the Date.
func nginx(date func() string) func(net.Conn, int) {
	return func(c net.Conn, v int) {
		buf := make([]byte, 512)
		n, _ := c.Read(buf)
		if !strings.HasPrefix(string(buf[:n]), "GET / ") {
			// nginx's answer to a TLS hello on a plain port.
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n")
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nServer: nginx/"+[]string{"1.22.1", "1.24.0"}[v]+
			"\r\nDate: "+date()+"\r\nContent-Type: text/html\r\nContent-Length: 31\r\n\r\n<html><title>Lab</title></html>")
		idle(c)
	}
}

// splitHTTP answers a GET as Python's http.server does, the headers and
// the page in two writes, so a match sees the title on one connection and
// not on the next (alternating). With newVersion, version 1 is a new
// server version.
func splitHTTP(newVersion bool) func(net.Conn, int) {
	var n atomic.Int64
	return func(c net.Conn, v int) {
		buf := make([]byte, 512)
		k, _ := c.Read(buf)
		if !strings.HasPrefix(string(buf[:k]), "GET / ") {
			_, _ = io.WriteString(c, "HTTP/1.0 400 Bad request\r\nServer: SimpleHTTP/0.6 Python/3.11.7\r\n\r\n")
			return
		}
		ver := "0.6"
		if newVersion && v == 1 {
			ver = "0.7"
		}
		_, _ = io.WriteString(c, "HTTP/1.0 200 OK\r\nServer: SimpleHTTP/"+ver+" Python/3.11.7\r\nContent-type: text/html\r\n\r\n")
		if n.Add(1)%2 == 0 {
			time.Sleep(50 * time.Millisecond)
		}
		_, _ = io.WriteString(c, "<html><head><title>Directory listing for /</title></head></html>\n")
		idle(c)
	}
}
