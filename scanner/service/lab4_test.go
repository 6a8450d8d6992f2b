package service

import (
	"context"
	"testing"
	"time"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/snapshot"
)

// TestLabFourthGroup runs the fourth daemon group (lab.FourthDaemons:
// GNU inetutils telnetd under inetd, Prosody, OpenVPN over TCP, Apache
// ZooKeeper, InfluxDB) and checks every port's service, product and
// version over IPv4 and IPv6. Versions come from the installed packages
// where the daemon tells its version (ZooKeeper's srvr, InfluxDB's
// X-Influxdb-Version); telnetd, Prosody and OpenVPN do not, and the test
// demands none there.
func TestLabFourthGroup(t *testing.T) {
	h := startGroup(t, "four", lab.FourthDaemons())

	// Each package must be installed (upstream fails the test otherwise)
	// even where its reply hides the version.
	for _, pkg := range []string{"inetutils-telnetd", "prosody", "openvpn"} {
		t.Logf("%s %s", pkg, upstream(t, pkg))
	}
	wants := map[uint16]snapshot.Service{
		23:   {Name: "telnet", Product: "GNU inetutils telnetd"},
		5222: {Name: "xmpp-client", Product: "Prosody XMPP server"},
		1194: {Name: "openvpn", Product: "OpenVPN"},
		2181: {Name: "zookeeper", Product: "Apache ZooKeeper", Version: upstream(t, "zookeeper")},
		8086: {Name: "http", Product: "InfluxDB http admin", Version: upstream(t, "influxdb")},
	}
	d := labDetector(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for k, g := range detectBoth(ctx, t, d, h, wants, nil) {
		w := wants[k.port]
		requireService(t, k, &w, g)
	}
}
