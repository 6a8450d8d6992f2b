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

// TestLabFifthGroup runs the fifth daemon group (lab.FifthDaemons: vsftpd
// and Postfix, from their unpacked Debian packages) and checks every
// port's service, product and version over IPv4 and IPv6. The expected
// versions come from the packages (the VERSION file .ci/install-deps
// writes, as dpkg-query does not know them): vsftpd tells its version in
// its greeting, Postfix's Debian banner does not, and the test demands
// none there.
func TestLabFifthGroup(t *testing.T) {
	h := startGroup(t, "five", lab.FifthDaemons())

	version := func(pkg string) string {
		v, err := lab.UnpackedVersion(pkg)
		require.NoError(t, err)
		t.Logf("%s %s", pkg, v)
		up, _, _ := strings.Cut(v, "-")
		return up
	}
	vsftpd := version("vsftpd")
	version("postfix") // the tree must be there even though the banner hides it
	smtp := snapshot.Service{Name: "smtp", Product: "Postfix smtpd"}
	wants := map[uint16]snapshot.Service{
		21:  {Name: "ftp", Product: "vsftpd", Version: vsftpd},
		25:  smtp,
		587: smtp,
	}
	cpes := map[uint16]string{21: "cpe:/a:beasts:vsftpd:" + vsftpd, 25: "cpe:/a:postfix:postfix", 587: "cpe:/a:postfix:postfix"}
	d := labDetector(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for k, g := range detectBoth(ctx, t, d, h, wants, nil) {
		w := wants[k.port]
		requireService(t, k, &w, g)
		require.Contains(t, g.CPE, cpes[k.port], "port %d v6 %v", k.port, k.v6)
	}
}
