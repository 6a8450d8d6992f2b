package service

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/snapshot"
)

// TestLabWindowsEstate runs the third daemon group (lab.WindowsDaemons:
// Samba, xrdp, OpenLDAP with LDAPS, an MIT KDC, rpcbind, CUPS, ngircd over
// TLS) and checks every port's service, product and version over IPv4 and
// IPv6. Versions come from the installed packages; where the protocol does
// not reveal the package's version the test demands none, so a version
// made up from the protocol's features fails it.
func TestLabWindowsEstate(t *testing.T) {
	h := startGroup(t, "win", lab.WindowsDaemons())

	// The packages are the products named below; each must be installed
	// (upstream fails the test otherwise) even where its reply hides the
	// version.
	for _, pkg := range []string{"samba", "xrdp", "slapd", "krb5-kdc", "rpcbind", "cups-daemon"} {
		t.Logf("%s %s", pkg, upstream(t, pkg))
	}
	type want struct {
		snapshot.Service
		infoPrefix string
	}
	wants := map[uint16]want{
		// Samba names its NetBIOS name and workgroup and the dialect, not
		// its version (SMB1, whose session setup would, is off); the
		// workgroup follows when the NTLMSSP challenge came in time.
		445:  {snapshot.Service{Name: "netbios-ssn", Product: "Samba smbd"}, "SMB 3.0.2"},
		139:  {snapshot.Service{Name: "netbios-ssn", Product: "Samba smbd"}, "SMB 3.0.2"},
		3389: {snapshot.Service{Name: "ms-wbt-server", Product: "xrdp"}, "RDP negotiation: protocol 1"},
		389:  {snapshot.Service{Name: "ldap", Product: "OpenLDAP"}, "naming context dc=lab,dc=example"},
		636:  {snapshot.Service{Name: "ldap", Product: "OpenLDAP", Tunnel: "ssl"}, "naming context dc=lab,dc=example"},
		88:   {snapshot.Service{Name: "kerberos-sec", Product: "MIT Kerberos"}, "KDC error "},
		// The portmapper protocol versions it lists for itself.
		111: {snapshot.Service{Name: "rpcbind", Version: "2-4"}, "RPC #100000"},
		// CUPS names its major.minor in the Server header; cupsd stalls
		// on the TLS handshake probe, which must not cost this answer.
		631:  {snapshot.Service{Name: "ipp", Product: "CUPS", Version: cupsMinor(t)}, "IPP 2.1"},
		6697: {snapshot.Service{Name: "irc", Product: "ngircd", Version: upstream(t, "ngircd"), Tunnel: "ssl"}, ""},
	}
	d := labDetector(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := detectBoth(ctx, t, d, h, wants, func(k labKey) time.Duration {
		if k.port == 6697 && k.v6 {
			// One IRC client at a time: ngircd hands the probe's
			// nicknames to the first connection.
			return 3 * time.Second
		}
		return 0
	})
	for k, g := range got {
		w := wants[k.port]
		requireService(t, k, &w.Service, g)
		// The info comes from a second reply (SMB's dialect and NTLMSSP
		// after the negotiate); under load the match without it can be the
		// one the version wait ends on, so an empty info is accepted, a
		// wrong one is not.
		if g.Info != "" || w.infoPrefix == "" || !k.smb() {
			require.True(t, strings.HasPrefix(g.Info, w.infoPrefix), "port %d v6 %v: info %q, want prefix %q", k.port, k.v6, g.Info, w.infoPrefix)
		}
	}
}

// cupsMinor is the installed CUPS's major.minor (2.4.2-3+deb12u10 -> 2.4),
// what its Server header says.
func cupsMinor(t *testing.T) string {
	v := upstream(t, "cups-daemon")
	parts := strings.SplitN(v, ".", 3)
	require.GreaterOrEqual(t, len(parts), 2, v)
	return parts[0] + "." + parts[1]
}
