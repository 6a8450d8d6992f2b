package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The UDP daemons beyond the first four: an NTP server that answers mode 6
// (ntpsec), a RADIUS server (freeradius), OpenVPN in TLS mode, the RPC
// portmapper (rpcbind), Samba's NetBIOS name server (nmbd), a Kerberos KDC
// (krb5kdc), an IKE daemon (strongSwan's charon) and a STUN server
// (coturn). Each runs from a configuration under its lab directory.

func prepareNtpsec(_ context.Context, c *daemonContext) ([]string, error) {
	// No server lines: an unsynchronized server (leap indicator 3). No
	// "noquery": mode 6 is answered, as on a default ntpd of old.
	conf, err := c.write("ntp.conf", fmt.Sprintf(`driftfile %[1]s/ntp.drift
restrict default nomodify nopeer
restrict -6 default nomodify nopeer
interface ignore wildcard
interface listen %[2]s
interface listen %[3]s
`, c.dir, c.host.addr, c.host.addr6))
	if err != nil {
		return nil, err
	}
	return []string{"ntpd", "-n", "-c", conf, "-p", c.path("ntpd.pid")}, nil
}

// freeradiusConf is Debian's configuration the lab copies and amends.
const freeradiusConf = "/etc/freeradius/3.0"

func prepareFreeradius(ctx context.Context, c *daemonContext) ([]string, error) {
	raddb := c.path("raddb")
	if err := exec.CommandContext(ctx, "cp", "-a", freeradiusConf, raddb).Run(); err != nil {
		return nil, fmt.Errorf("copy %s: %w", freeradiusConf, err)
	}
	// The lab's networks are the clients (a RADIUS server answers no one
	// else), with a secret no probe knows.
	if err := os.WriteFile(filepath.Join(raddb, "clients.conf"), []byte(`client lab4 {
	ipaddr = 198.18.0.0/15
	secret = exposure-lab-secret
}
client lab6 {
	ipv6addr = 2001:2::/48
	secret = exposure-lab-secret
}
`), 0o640); err != nil {
		return nil, err
	}
	conf := filepath.Join(raddb, "radiusd.conf")
	b, err := os.ReadFile(conf)
	if err != nil {
		return nil, err
	}
	s := strings.Replace(string(b), "run_dir = ${localstatedir}/run/${name}", "run_dir = "+c.dir, 1)
	// Debian delays every Access-Reject by a second (reject_delay = 1), past
	// the UDP engine's probe timeouts: a sweep sees such a server only
	// when it answers at once (see the README's UDP section).
	s = strings.Replace(s, "\treject_delay = 1\n", "\treject_delay = 0\n", 1)
	if err := os.WriteFile(conf, []byte(s), 0o640); err != nil {
		return nil, err
	}
	// Only the default virtual server: its listen sections are "*" on
	// 1812 and 1813 (IPv4 and IPv6).
	for _, site := range []string{"inner-tunnel"} {
		_ = os.Remove(filepath.Join(raddb, "sites-enabled", site))
	}
	if err := exec.CommandContext(ctx, "chown", "-R", "freerad:freerad", raddb).Run(); err != nil {
		return nil, fmt.Errorf("chown %s: %w", raddb, err)
	}
	if err := chownUser(c.dir, "freerad"); err != nil {
		return nil, err
	}
	return []string{"freeradius", "-f", "-d", raddb, "-l", "stdout"}, nil
}

func prepareOpenVPN(_ context.Context, c *daemonContext) ([]string, error) {
	return openVPNArgs(c, "udp6", "10.98.0.1")
}

// openVPNArgs writes the lab's OpenVPN server config for proto (udp6,
// tcp6-server: on the wildcard, the host's IPv4 and IPv6) and returns the
// command line. TLS mode, no tls-auth (a server with tls-auth or tls-crypt
// answers no one without the key), so a client's hard reset gets the
// server's. A server (not point to point, which talks to its first peer
// only) needs a tun device: one in the host's namespace, left unconfigured
// (ifconfig-noexec: local is never applied).
func openVPNArgs(c *daemonContext, proto, local string) ([]string, error) {
	cert, key, err := c.tlsFiles()
	if err != nil {
		return nil, err
	}
	conf, err := c.write("openvpn.conf", fmt.Sprintf(`dev tun
mode server
tls-server
proto %[3]s
port 1194
topology subnet
ifconfig %[4]s 255.255.255.0
ifconfig-noexec
ca %[1]s
cert %[1]s
key %[2]s
dh none
verb 3
`, cert, key, proto, local))
	if err != nil {
		return nil, err
	}
	return []string{"openvpn", "--config", conf}, nil
}

// NmbdWorkgroup and NmbdName are the lab's NetBIOS workgroup and name.
const (
	NmbdWorkgroup = "EXPOSURELAB"
	NmbdName      = "LABNMBD"
)

func prepareNmbd(_ context.Context, c *daemonContext) ([]string, error) {
	for _, d := range []string{"lock", "state", "cache", "private", "ncalrpc"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return nil, err
		}
	}
	conf, err := c.write("smb.conf", fmt.Sprintf(`[global]
workgroup = %[2]s
netbios name = %[3]s
interfaces = %[4]s/32
bind interfaces only = yes
lock directory = %[1]s/lock
state directory = %[1]s/state
cache directory = %[1]s/cache
private dir = %[1]s/private
ncalrpc dir = %[1]s/ncalrpc
pid directory = %[1]s
log file = %[1]s/log.%%m
disable netbios = no
`, c.dir, NmbdWorkgroup, NmbdName, c.host.addr))
	if err != nil {
		return nil, err
	}
	return []string{"nmbd", "--foreground", "--debug-stdout", "--no-process-group", "--configfile=" + conf}, nil
}

// KDCRealm is the lab KDC's realm.
const KDCRealm = "LAB.EXAMPLE"

func prepareKDC(ctx context.Context, c *daemonContext) ([]string, error) {
	krb5, err := c.write("krb5.conf", fmt.Sprintf("[libdefaults]\n default_realm = %s\n", KDCRealm))
	if err != nil {
		return nil, err
	}
	kdc, err := c.write("kdc.conf", fmt.Sprintf(`[kdcdefaults]
 kdc_ports = 88
 kdc_tcp_ports = 88
 kdc_listen = %[2]s,[%[3]s]
 kdc_tcp_listen = %[2]s,[%[3]s]
[realms]
 %[4]s = {
  database_name = %[1]s/principal
  key_stash_file = %[1]s/stash
  acl_file = %[1]s/kadm5.acl
 }
[logging]
 kdc = FILE:%[1]s/kdc.log
`, c.dir, c.host.addr, c.host.addr6, KDCRealm))
	if err != nil {
		return nil, err
	}
	env := []string{"KRB5_CONFIG=" + krb5, "KRB5_KDC_PROFILE=" + kdc}
	cmd := exec.CommandContext(ctx, "kdb5_util", "-r", KDCRealm, "create", "-s", "-P", "exposure-lab-master")
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kdb5_util create: %w: %s", err, out)
	}
	return append(append([]string{"env"}, env...), "krb5kdc", "-n", "-r", KDCRealm, "-P", c.path("krb5kdc.pid")), nil
}

// charon is strongSwan's IKE daemon, run without starter or systemd.
const charon = "/usr/lib/ipsec/charon"

func prepareCharon(_ context.Context, c *daemonContext) ([]string, error) {
	// No connection: charon answers every IKE_SA_INIT (v2) and Main Mode
	// (v1) with a notification, as a gateway does to a peer it has no
	// configuration for.
	conf, err := c.write("strongswan.conf", fmt.Sprintf(`charon {
	load = random nonce aes sha1 sha2 md5 hmac gmp kdf pem pkcs1 x509 pubkey kernel-netlink socket-default vici
	install_routes = no
	port = 500
	port_nat_t = 4500
	filelog {
		stdout {
			path = %[1]s/charon-file.log
			default = 1
		}
	}
	plugins {
		vici {
			socket = unix://%[1]s/charon.vici
		}
	}
}
`, c.dir))
	if err != nil {
		return nil, err
	}
	return privateRun([]string{"/run"}, []string{"env", "STRONGSWAN_CONF=" + conf, charon}), nil
}

func prepareCoturn(_ context.Context, c *daemonContext) ([]string, error) {
	return []string{"turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls", "--listening-port", "3478",
		"-L", c.host.addr.String(), "-L", c.host.addr6.String(), "--log-file", "stdout", "--simple-log",
		"--pidfile", c.path("turnserver.pid"), "--db", c.path("turndb"), "-r", "lab.example"}, nil
}
