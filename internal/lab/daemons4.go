package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FourthDaemons returns the fourth group of real daemons: remote access,
// messaging and data services the other groups do not run (a telnet
// daemon under inetd, Prosody's XMPP, OpenVPN over TCP, Apache ZooKeeper,
// InfluxDB). vsftpd and Postfix, whose Debian packages conflict with the
// first group's proftpd-basic and exim4, are the fifth group
// (FifthDaemons), run from unpacked packages. Like the other groups, each
// uses only files under the lab's directory; they run on a host of their
// own.
func FourthDaemons() []Daemon {
	return []Daemon{
		{Name: "telnetd", Services: map[uint16]string{23: "telnet"}, Ports: []uint16{23}, Binaries: []string{"inetutils-inetd", "telnetd", "sh", "mount"}, prepare: prepareTelnetd},
		{Name: "prosody", Services: map[uint16]string{5222: "xmpp-client"}, Ports: []uint16{5222}, Binaries: []string{"prosody", "setpriv"}, prepare: prepareProsody},
		{Name: "openvpn-tcp", Services: map[uint16]string{1194: "openvpn"}, Ports: []uint16{1194}, Binaries: []string{"openvpn"}, prepare: prepareOpenVPNTCP},
		{Name: "zookeeper", Services: map[uint16]string{2181: "zookeeper"}, Ports: []uint16{2181}, Binaries: []string{"java"}, prepare: prepareZooKeeper, ready: zookeeperServing},
		{Name: "influxdb", Services: map[uint16]string{8086: "http"}, Ports: []uint16{8086}, Binaries: []string{"influxd"}, prepare: prepareInfluxDB},
	}
}

func prepareTelnetd(_ context.Context, c *daemonContext) ([]string, error) {
	// inetd runs telnetd per connection; tcp6 on the wildcard is the
	// host's IPv4 and IPv6.
	conf, err := c.write("inetd.conf", "telnet stream tcp6 nowait root /usr/sbin/telnetd telnetd\n")
	if err != nil {
		return nil, err
	}
	// telnetd looks up the client's name before it says a word; the
	// namespace reaches no name server, so each connection would wait out
	// the resolver's timeouts. A resolver on the namespace's loopback
	// refuses at once. Its pid file default (/run/inetd.pid) is moved by
	// -p; the mounts stay in the mount namespace of ip netns exec.
	resolv, err := c.write("resolv.conf", "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")
	if err != nil {
		return nil, err
	}
	return []string{"sh", "-c", `mount --bind "$1" /etc/resolv.conf && shift && exec "$@"`, "sh", resolv,
		"inetutils-inetd", "-d", "-p" + c.path("inetd.pid"), conf}, nil
}

func prepareProsody(_ context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	data, err := c.mkdirOwned("data", "prosody", 0o750)
	if err != nil {
		return nil, err
	}
	conf, err := c.write("prosody.cfg.lua", fmt.Sprintf(`pidfile = %[1]q
data_path = %[2]q
certificates = %[2]q
interfaces = { %[3]q, %[4]q }
c2s_ports = { 5222 }
s2s_ports = { }
c2s_direct_tls_ports = { }
http_ports = { }
https_ports = { }
component_ports = { }
modules_enabled = { "roster", "saslauth", "disco", "ping" }
modules_disabled = { "s2s", "http", "tls" }
authentication = "internal_hashed"
c2s_require_encryption = false
allow_unencrypted_plain_auth = false
log = { info = "*console" }
VirtualHost "lab.example"
`, filepath.Join(data, "prosody.pid"), data, h.addr.String(), h.addr6.String()))
	if err != nil {
		return nil, err
	}
	// prosody refuses root and leaves the switch to prosodyctl (which
	// would daemonize): setpriv starts it as its own user.
	return []string{"setpriv", "--reuid=prosody", "--regid=prosody", "--init-groups", "prosody", "-F", "--config", conf}, nil
}

func prepareOpenVPNTCP(_ context.Context, c *daemonContext) ([]string, error) {
	return openVPNArgs(c, "tcp6-server", "10.98.1.1")
}

func prepareZooKeeper(_ context.Context, c *daemonContext) ([]string, error) {
	data := c.path("data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	// Standalone, four-letter words allowed (srvr names the version), no
	// admin server on 8080; the client port on the wildcard, the host's
	// IPv4 and IPv6.
	conf, err := c.write("zoo.cfg", fmt.Sprintf(`tickTime=2000
dataDir=%[1]s
clientPort=2181
4lw.commands.whitelist=srvr,stat,ruok
admin.enableServer=false
`, data))
	if err != nil {
		return nil, err
	}
	return []string{"java", "-Xmx128m", "-Dzookeeper.log.dir=" + c.dir,
		"-cp", "/etc/zookeeper/conf_example:" + filepath.Join("/usr/share/java", "zookeeper.jar"),
		"org.apache.zookeeper.server.ZooKeeperServerMain", conf}, nil
}

func prepareInfluxDB(_ context.Context, c *daemonContext) ([]string, error) {
	conf, err := c.write("influxdb.conf", fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:8088"
[meta]
  dir = "%[1]s/meta"
[data]
  dir = "%[1]s/data"
  wal-dir = "%[1]s/wal"
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = ":8086"
  log-enabled = false
[continuous_queries]
  enabled = false
`, c.dir))
	if err != nil {
		return nil, err
	}
	return []string{"influxd", "run", "-config", conf}, nil
}

// zookeeperServing waits until ZooKeeper answers srvr with its version:
// it accepts clients before it serves them ("This ZooKeeper instance is
// not currently serving requests").
func zookeeperServing(ctx context.Context, h *Host) error {
	return pollReply(ctx, netip.AddrPortFrom(h.addr, 2181), []byte("srvr"), time.Second, "Zookeeper version: ", "zookeeper not serving")
}

// pollReply connects to addr every 100 ms, sends send (when not empty) and
// reads the reply (at most 512 bytes; the first line when send is empty),
// until the reply starts with prefix or ctx ends; the error says what,
// with the last reply.
func pollReply(ctx context.Context, addr netip.AddrPort, send []byte, wait time.Duration, prefix, what string) error {
	var last string
	for {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", addr.String())
		cancel()
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(wait))
			r := io.LimitReader(c, 512)
			if len(send) == 0 {
				last, _ = bufio.NewReader(r).ReadString('\n')
			} else if _, err = c.Write(send); err == nil {
				b, _ := io.ReadAll(r)
				last = string(b)
			}
			c.Close()
			if strings.HasPrefix(last, prefix) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last reply %q, error %v)", what, ctx.Err(), tail(last, 200), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
