package service

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/scanner/netif"
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
	l := lab.New(t)
	h := l.AddHost("four")
	var names []string
	for _, d := range lab.FourthDaemons() {
		names = append(names, d.Name)
	}
	lab.Start(t, h, names...)

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
	bind, err := netif.New(h.Lab().Interface())
	require.NoError(t, err)
	d, err := New(Options{Intensity: DefaultIntensity, Timeout: 10 * time.Second, Bind: bind})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type key struct {
		port uint16
		v6   bool
	}
	var mu sync.Mutex
	got := map[key]*snapshot.Service{}
	var wg sync.WaitGroup
	for port := range wants {
		for _, v6 := range []bool{false, true} {
			k := key{port, v6}
			wg.Add(1)
			go func() {
				defer wg.Done()
				addr := h.Addr()
				if k.v6 {
					addr = h.Addr6()
				}
				s, err := d.Detect(ctx, addr, k.port)
				if err != nil {
					t.Errorf("port %d (v6 %v): %v", k.port, k.v6, err)
					return
				}
				mu.Lock()
				got[k] = s
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	for k, g := range got {
		t.Logf("%5d v6=%-5v %s %q %q %q %v", k.port, k.v6, g.FullName(), g.Product, g.Version, g.Info, g.CPE)
	}
	require.Len(t, got, 2*len(wants))
	for k, g := range got {
		w := wants[k.port]
		require.Equal(t, w.Name, g.Name, "port %d v6 %v", k.port, k.v6)
		require.Equal(t, w.Product, g.Product, "port %d v6 %v", k.port, k.v6)
		require.Equal(t, w.Version, g.Version, "port %d v6 %v", k.port, k.v6)
		require.Equal(t, w.Tunnel, g.Tunnel, "port %d v6 %v", k.port, k.v6)
	}
}
