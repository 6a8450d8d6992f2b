package service

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net"
	"sync"
	"time"

	"github.com/exposure-monitor/exposure/internal/textsafe"
	"github.com/exposure-monitor/exposure/snapshot"
)

// tlsHandshakeWait bounds the TLS detection handshake.
const tlsHandshakeWait = 3 * time.Second

// detectInTLS repeats the detection inside TLS on a port whose plain phase
// completed a TLS handshake, and reports it as tunnel "ssl" with the facts
// of cert, the leaf certificate that handshake saw.
func (d *Detector) detectInTLS(ctx context.Context, plain dialFunc, port uint16, cert *x509.Certificate) (*snapshot.Service, error) {
	secure := func(ctx context.Context) (net.Conn, error) {
		tc, err := dialTLS(ctx, plain)
		if err != nil {
			return nil, err
		}
		return tc, nil
	}
	inner := d.detectPhase(ctx, secure, port, true)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := inner.service()
	if s.Name == "tcpwrapped" {
		s.Name = "unknown"
	}
	s.Tunnel = "ssl"
	s.Cert = certFacts(cert)
	return s, nil
}

// dialTLS connects with dial and completes a TLS handshake on top.
func dialTLS(ctx context.Context, dial dialFunc) (*tls.Conn, error) {
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, tlsConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// tlsConfig is the detection's client configuration, built once and
// shared (a tls.Config is safe for concurrent use once set up): every
// cipher suite Go knows, so that old servers answer too, and the classic
// key exchanges only. A post-quantum key share (X25519MLKEM768, Go's
// default first choice) costs a detection 20 KB of allocation and a key
// generation per handshake, and no server needs it to show its
// certificate (one that prefers it asks again with HelloRetryRequest).
var tlsConfig = sync.OnceValue(func() *tls.Config {
	var suites []uint16
	for _, s := range tls.CipherSuites() {
		suites = append(suites, s.ID)
	}
	for _, s := range tls.InsecureCipherSuites() {
		suites = append(suites, s.ID)
	}
	return &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // detection records the certificate, it does not trust it
		MinVersion:         tls.VersionTLS10,
		CipherSuites:       suites,
		CurvePreferences:   []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521},
	}
})

// tlsProbe tries a TLS handshake. It is the phase's TLS detector: a server
// that completes one is examined again inside TLS.
func (d *Detector) tlsProbe(ctx context.Context, dial dialFunc) outcome {
	ctx, cancel := context.WithTimeout(ctx, tlsHandshakeWait)
	defer cancel()
	tc, err := dialTLS(ctx, dial)
	if err != nil {
		return outcome{idx: tlsIdx, tlsSlow: ctx.Err() != nil}
	}
	defer tc.NetConn().Close() // only the certificate was wanted: no close_notify
	o := outcome{idx: tlsIdx, tls: true}
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
		o.cert = certs[0]
	}
	return o
}

// certFacts records the leaf certificate facts users track as drift.
func certFacts(c *x509.Certificate) *snapshot.Cert {
	if c == nil {
		return nil
	}
	sum := sha256.Sum256(c.Raw)
	var sans []string
	sans = append(sans, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		sans = append(sans, ip.String())
	}
	sans = append(sans, c.EmailAddresses...)
	for _, u := range c.URIs {
		sans = append(sans, u.String())
	}
	// Names from an untrusted certificate: cleaned and bounded like banners.
	const maxSANs = 100
	if len(sans) > maxSANs {
		sans = sans[:maxSANs]
	}
	for i := range sans {
		sans[i] = textsafe.Clean(sans[i], 256)
	}
	return &snapshot.Cert{
		Subject:     textsafe.Clean(c.Subject.String(), 512),
		Issuer:      textsafe.Clean(c.Issuer.String(), 512),
		SANs:        sans,
		NotBefore:   c.NotBefore.UTC(),
		NotAfter:    c.NotAfter.UTC(),
		Fingerprint: hex.EncodeToString(sum[:]),
	}
}
