package service

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/testnet"
	"github.com/exposure-monitor/exposure/snapshot"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return l
}

var loopback = netip.MustParseAddr("127.0.0.1")

// logBuffer collects log lines concurrently.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newDetector(t *testing.T, o Options) (*Detector, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Second
	}
	d, err := New(o)
	require.NoError(t, err)
	return d, logs
}

// idle keeps a connection open without a word until the peer goes.
func idle(c net.Conn) { _, _ = io.Copy(io.Discard, c) }

func TestDetectFakeServices(t *testing.T) {
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity, ProbeFiles: []string{"testdata/fake-banner-probes"}})
	tests := []struct {
		name   string
		handle func(net.Conn)
		want   snapshot.Service
	}{
		{"banner", func(c net.Conn) { _, _ = io.WriteString(c, "FAKE 1.2.3\r\n"); idle(c) },
			snapshot.Service{Name: "fake", Product: "Fake daemon", Version: "1.2.3", CPE: []string{"cpe:/a:example:fake:1.2.3"}}},
		{"silent until asked", func(c net.Conn) {
			buf := make([]byte, 64)
			n, _ := c.Read(buf)
			if string(buf[:n]) == "KNOCK\r\n" {
				_, _ = io.WriteString(c, "WHO IS THERE 4.5\r\n")
			}
			idle(c)
		}, snapshot.Service{Name: "knock", Product: "Knock server", Version: "4.5", CPE: []string{}}},
		{"control characters stripped", func(c net.Conn) {
			_, _ = io.WriteString(c, "HOSTILE evil\x1b[31m\x07\tname\u202e\r\n")
			idle(c)
		}, snapshot.Service{Name: "fakehostile", Product: "evil [31m name", Version: "1.0", CPE: []string{}}},
		{"redis softmatch narrowed to INFO", func(c net.Conn) {
			buf := make([]byte, 256)
			n, _ := c.Read(buf)
			if strings.HasPrefix(string(buf[:n]), "*2\r\n$4\r\nINFO") {
				info := "# Server\r\nredis_version:7.2.4\r\nredis_git_sha1:00000000\r\n"
				_, _ = io.WriteString(c, "$"+itoa(len(info))+"\r\n"+info+"\r\n")
			} else {
				_, _ = io.WriteString(c, "-ERR unknown command 'x'\r\n")
			}
			idle(c)
		}, snapshot.Service{Name: "redis", Product: "Redis key-value store", Version: "7.2.4", CPE: []string{"cpe:/a:redis:redis:7.2.4"}}},
		{"versionless answer waits for a versioned one", quickSlow(func() time.Duration { return 150 * time.Millisecond }),
			snapshot.Service{Name: "fake", Product: "Fake daemon", Version: "3.1", CPE: []string{}}},
		{"endless stream is read up to the bound", func(c net.Conn) {
			chunk := []byte(strings.Repeat("A", 4096))
			for {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}, snapshot.Service{Name: "unknown", CPE: []string{}, Fingerprint: "NULL:" + strings.Repeat("A", maxFingerprint)}},
		{"unknown", func(c net.Conn) { _, _ = io.WriteString(c, "\x00\x01garbage\r\n"); idle(c) },
			snapshot.Service{Name: "unknown", CPE: []string{}, Fingerprint: `NULL:\0\x01garbage\r\n`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := testnet.Serve(t, listen(t), tt.handle)
			got, err := d.Detect(context.Background(), loopback, port)
			require.NoError(t, err)
			require.Equal(t, tt.want, *got)
		})
	}
}

// countingConn counts the bytes read from a connection.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// TestDetectReadBound: a server that never stops talking is read up to the
// bound doc.go states (16 KiB per connection), no further, and reaches
// the bound (the read does not stop short of it).
func TestDetectReadBound(t *testing.T) {
	const bound = 16 << 10
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity, ProbeFiles: []string{"testdata/fake-banner-probes"}})
	port := testnet.Serve(t, listen(t), func(c net.Conn) {
		chunk := []byte(strings.Repeat("A", 4096))
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	var mu sync.Mutex
	var reads []*atomic.Int64
	var dialer net.Dialer
	dial := func(ctx context.Context) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(loopback, port).String())
		if err != nil {
			return nil, err
		}
		n := new(atomic.Int64)
		mu.Lock()
		reads = append(reads, n)
		mu.Unlock()
		return countingConn{c, n}, nil
	}
	res := d.detectPhase(context.Background(), dial, port, false)
	require.Equal(t, "unknown", res.service().Name)
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, reads)
	most := int64(0)
	for i, n := range reads {
		require.LessOrEqual(t, n.Load(), int64(bound), "connection %d read past the bound", i)
		most = max(most, n.Load())
	}
	require.Equal(t, int64(bound), most, "no connection read up to the bound")
}

// quickSlow serves the Quick and Slow probes of testdata/fake-banner-probes:
// a versionless answer at once, a versioned one after slow().
func quickSlow(slow func() time.Duration) func(net.Conn) {
	return func(c net.Conn) {
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		switch string(buf[:n]) {
		case "QUICK\r\n":
			_, _ = io.WriteString(c, "FAKE-QUICK\r\n")
		case "SLOW\r\n":
			time.Sleep(slow())
			_, _ = io.WriteString(c, "FAKE-SLOW 3.1\r\n")
		}
		idle(c)
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

func TestDetectTCPWrapped(t *testing.T) {
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity})
	port := testnet.Serve(t, listen(t), func(net.Conn) {})
	got, err := d.Detect(context.Background(), loopback, port)
	require.NoError(t, err)
	require.Equal(t, "tcpwrapped", got.Name)
	require.Empty(t, got.Product)
}

func TestDetectSilentServiceIsUnknownWithinTimeout(t *testing.T) {
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity, Timeout: 300 * time.Millisecond})
	port := testnet.Serve(t, listen(t), idle)
	got, err := d.Detect(context.Background(), loopback, port)
	require.NoError(t, err)
	require.Equal(t, "unknown", got.Name)
	require.True(t, got.Incomplete, "the timeout cut probes that were still waiting")
}

// TestDetectIncompleteWhenTheVersionProbeIsTooSlow: a versionless hard
// match is the verdict when the probe that could give the version does not
// answer within the timeout, marked Incomplete so that the diff does not
// take the missing version for a change; with time enough it is complete.
func TestDetectIncompleteWhenTheVersionProbeIsTooSlow(t *testing.T) {
	slowness := make(chan time.Duration, 1)
	handle := quickSlow(func() time.Duration { d := <-slowness; slowness <- d; return d })
	port := testnet.Serve(t, listen(t), handle)
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity, ProbeFiles: []string{"testdata/fake-banner-probes"},
		Timeout: 400 * time.Millisecond})

	slowness <- time.Second
	got, err := d.Detect(context.Background(), loopback, port)
	require.NoError(t, err)
	require.Equal(t, snapshot.Service{Name: "fake", Product: "Fake daemon", CPE: []string{}, Incomplete: true}, *got)

	<-slowness
	slowness <- 50 * time.Millisecond
	got, err = d.Detect(context.Background(), loopback, port)
	require.NoError(t, err)
	require.Equal(t, snapshot.Service{Name: "fake", Product: "Fake daemon", Version: "3.1", CPE: []string{}}, *got)
}

func TestDetectContextCancelled(t *testing.T) {
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity})
	port := testnet.Serve(t, listen(t), idle)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := d.Detect(ctx, loopback, port)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "mail.example.test", Organization: []string{"Exposure Lab"}},
		DNSNames:     []string{"mail.example.test", "imap.example.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestDetectInsideTLS(t *testing.T) {
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity})
	cert := selfSigned(t)
	tests := []struct {
		name   string
		handle func(net.Conn)
		want   snapshot.Service
	}{
		{"imaps banner", func(c net.Conn) {
			_, _ = io.WriteString(c, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] Dovecot (Debian) ready.\r\n")
			idle(c)
		}, snapshot.Service{Name: "imap", Product: "Dovecot imapd", CPE: []string{"cpe:/a:dovecot:dovecot"}}},
		{"https", func(c net.Conn) {
			buf := make([]byte, 512)
			n, _ := c.Read(buf)
			if strings.HasPrefix(string(buf[:n]), "GET / ") {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\n\r\n<html><title>Lab</title></html>")
			}
			idle(c)
		}, snapshot.Service{Name: "http", Product: "nginx", Version: "1.22.1", Info: "Lab", CPE: []string{"cpe:/a:igor_sysoev:nginx:1.22.1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tls.NewListener(listen(t), &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
			port := testnet.Serve(t, l, func(c net.Conn) {
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				tt.handle(c)
			})
			got, err := d.Detect(context.Background(), loopback, port)
			require.NoError(t, err)
			require.NotNil(t, got.Cert)
			sum := sha256.Sum256(cert.Certificate[0])
			require.Equal(t, snapshot.Cert{
				Subject:     "CN=mail.example.test,O=Exposure Lab",
				Issuer:      "CN=mail.example.test,O=Exposure Lab",
				SANs:        []string{"mail.example.test", "imap.example.test", "127.0.0.1"},
				NotBefore:   time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
				NotAfter:    time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
				Fingerprint: hex.EncodeToString(sum[:]),
			}, *got.Cert)
			got.Cert = nil
			want := tt.want
			want.Tunnel = "ssl"
			require.Equal(t, want, *got)
		})
	}
}

func TestDetectExcluded(t *testing.T) {
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity, ProbeFiles: []string{"testdata/sample-probes"}})
	_, err := d.Detect(context.Background(), loopback, 9101)
	require.ErrorIs(t, err, ErrExcluded)
}

func TestBadPatternReportedOnce(t *testing.T) {
	d, logs := newDetector(t, Options{Intensity: DefaultIntensity, ProbeFiles: []string{"testdata/fake-banner-probes"}})
	for range 3 {
		port := testnet.Serve(t, listen(t), func(c net.Conn) { _, _ = io.WriteString(c, "nothing known\r\n"); idle(c) })
		_, err := d.Detect(context.Background(), loopback, port)
		require.NoError(t, err)
	}
	require.Equal(t, int64(1), d.BadPatterns())
	require.Equal(t, 1, strings.Count(logs.String(), "probe pattern does not compile"), logs.String())
	require.Contains(t, logs.String(), "testdata/fake-banner-probes")
	require.Equal(t, int64(1), d.CompileAll())
}

func TestAnnotate(t *testing.T) {
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity, Concurrency: 2, ProbeFiles: []string{"testdata/fake-banner-probes"}})
	var ports []snapshot.Port
	for range 3 {
		p := testnet.Serve(t, listen(t), func(c net.Conn) { _, _ = io.WriteString(c, "FAKE 2.0\r\n"); idle(c) })
		ports = append(ports, snapshot.Port{Port: p, Protocol: "tcp", State: snapshot.StateOpen})
	}
	ports = append(ports, snapshot.Port{Port: 1, Protocol: "tcp", State: snapshot.StateFiltered})
	s := &snapshot.Snapshot{Hosts: []snapshot.Host{{Address: "127.0.0.1", State: snapshot.HostUp, Ports: ports}}}
	d.Annotate(context.Background(), s)
	for _, p := range s.Hosts[0].Ports[:3] {
		require.NotNil(t, p.Service, "port %d", p.Port)
		require.Equal(t, "Fake daemon", p.Service.Product)
		require.Equal(t, "2.0", p.Service.Version)
	}
	require.Nil(t, s.Hosts[0].Ports[3].Service, "only open ports are examined")
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{{Intensity: -1}, {Intensity: 10}, {Timeout: -time.Second}, {Concurrency: -1}} {
		_, err := New(o)
		require.Error(t, err)
	}
	_, err := New(Options{ProbeFiles: []string{"testdata/does-not-exist"}})
	require.ErrorContains(t, err, "load probe file")
}

func TestDetectGoHTTPServer(t *testing.T) {
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "<html><head><title>Lab \x1b dashboard</title></head></html>")
	}), ReadHeaderTimeout: time.Second}
	l := listen(t)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	got, err := d.Detect(context.Background(), loopback, uint16(l.Addr().(*net.TCPAddr).Port))
	require.NoError(t, err)
	require.Equal(t, snapshot.Service{Name: "http", Product: "Golang net/http server", Info: "Lab dashboard", CPE: []string{"cpe:/a:golang:go"}}, *got)
}

func BenchmarkDetectLoopback(b *testing.B) {
	d, err := New(Options{Intensity: DefaultIntensity, Timeout: 3 * time.Second})
	require.NoError(b, err)
	cases := map[string]func(net.Conn){
		"banner-ssh": func(c net.Conn) {
			_, _ = io.WriteString(c, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n")
			_, _ = io.Copy(io.Discard, c)
		},
		"silent-memcached": func(c net.Conn) {
			buf := make([]byte, 256)
			n, _ := c.Read(buf)
			if string(buf[:n]) == "version\r\n" {
				_, _ = io.WriteString(c, "VERSION 1.6.18\r\n")
			} else {
				_, _ = io.WriteString(c, "ERROR\r\n")
			}
			_, _ = io.Copy(io.Discard, c)
		},
	}
	for name, handle := range cases {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(b, err)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); handle(c) }()
			}
		}()
		port := uint16(l.Addr().(*net.TCPAddr).Port)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				s, err := d.Detect(context.Background(), loopback, port)
				if err != nil || s.Version == "" {
					b.Fatalf("detect: %v %+v", err, s)
				}
			}
		})
		l.Close()
	}
}

func TestEmbeddedExcludesPrinterPorts(t *testing.T) {
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity})
	for _, port := range []uint16{9100, 9107} {
		_, err := d.Detect(context.Background(), loopback, port)
		require.ErrorIs(t, err, ErrExcluded)
	}
}

func TestPlan(t *testing.T) {
	names := func(ps []*Probe) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}
	tests := []struct {
		intensity int
		port      uint16
		inTLS     bool
		want      []string
	}{
		{0, 12345, false, []string{"NULL"}},
		{0, 6379, false, []string{"NULL", "RedisInfo"}},
		{1, 12345, false, []string{"NULL", "GetRequest", "DNSVersionBindTCP"}},
		{2, 5432, false, []string{"NULL", "PostgresStartup", "GetRequest", "DNSVersionBindTCP", "RedisInfo", "MemcachedVersion"}},
		{0, 443, false, []string{"NULL"}},
		{0, 443, true, []string{"NULL", "GetRequest"}},
		{0, 8883, true, []string{"NULL", "MQTTConnect"}},
	}
	for _, tt := range tests {
		d, _ := newDetector(t, Options{Intensity: tt.intensity})
		require.Equal(t, tt.want, names(d.plan(tt.port, tt.inTLS)), "intensity %d port %d tls %v", tt.intensity, tt.port, tt.inTLS)
	}
}

// TestDetectHTTPSAnsweringPlainHTTP: Go's HTTPS server, like nginx, answers
// a plain GET with an HTTP 400; the verdict must still come from inside TLS.
func TestDetectHTTPSAnsweringPlainHTTP(t *testing.T) {
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "<title>inside</title>")
	}))
	defer srv.Close()
	port := uint16(srv.Listener.Addr().(*net.TCPAddr).Port)
	got, err := d.Detect(context.Background(), loopback, port)
	require.NoError(t, err)
	require.Equal(t, "ssl", got.Tunnel)
	require.Equal(t, "http", got.Name)
	require.Equal(t, "Golang net/http server", got.Product)
	require.Equal(t, "inside", got.Info)
	require.NotNil(t, got.Cert)
	sum := sha256.Sum256(srv.Certificate().Raw)
	require.Equal(t, hex.EncodeToString(sum[:]), got.Cert.Fingerprint)
}

func TestDetectClosedPort(t *testing.T) {
	d, _ := newDetector(t, Options{Intensity: DefaultIntensity})
	l := listen(t)
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	require.NoError(t, l.Close())
	_, err := d.Detect(context.Background(), loopback, port)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
}
