package lab

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// WindowsDaemons returns the third group of real daemons: what a Windows
// or Active Directory estate exposes, served by the Debian daemons that
// speak it (Samba's file server, xrdp, OpenLDAP with LDAPS, an MIT
// Kerberos KDC), and the Unix infrastructure found next to it (rpcbind,
// CUPS, ngircd's own TLS). cupsd has no certificate it can use: it stalls
// every client for seconds on a TLS ClientHello, as such an install does. Like the other groups, each uses only files
// under the lab's directory; they run on a host of their own.
func WindowsDaemons() []Daemon {
	return []Daemon{
		{Name: "smbd", Services: map[uint16]string{139: "netbios-ssn", 445: "microsoft-ds"}, Ports: []uint16{445, 139}, Binaries: []string{"smbd"}, prepare: prepareSmbd},
		{Name: "xrdp", Services: map[uint16]string{3389: "ms-wbt-server"}, Ports: []uint16{3389}, Binaries: []string{"xrdp", "sh", "mount"}, prepare: prepareXrdp},
		{Name: "slapd", Services: map[uint16]string{389: "ldap", 636: "ssl/ldap"}, Ports: []uint16{389, 636}, Binaries: []string{"slapd"}, prepare: prepareSlapd},
		{Name: "krb5kdc", Services: map[uint16]string{88: "kerberos-sec"}, Ports: []uint16{88}, Binaries: []string{"krb5kdc", "kdb5_util", "env"}, prepare: prepareKrb5kdc},
		{Name: "rpcbind", Services: map[uint16]string{111: "rpcbind"}, Ports: []uint16{111}, Binaries: []string{"rpcbind", "sh", "mount"}, prepare: prepareRpcbind},
		{Name: "cupsd", Services: map[uint16]string{631: "ipp"}, Ports: []uint16{631}, Binaries: []string{"cupsd"}, prepare: prepareCupsd},
		{Name: "ngircd-tls", Services: map[uint16]string{6697: "ssl/irc"}, Ports: []uint16{6697}, Binaries: []string{"ngircd"}, prepare: prepareNgircdTLS},
	}
}

// privateRun wraps argv so the daemon sees a tmpfs of its own on each of
// dirs (its compiled-in pid and socket paths under /run): ip netns exec
// gives every command its own mount namespace, so the mounts stay inside
// it and two lab hosts' daemons never share a pid file.
func privateRun(dirs []string, argv []string) []string {
	var script strings.Builder
	for _, d := range dirs {
		fmt.Fprintf(&script, "mkdir -p %[1]s && mount -t tmpfs -o mode=0755 exposure-lab %[1]s && ", d)
	}
	script.WriteString(`exec "$0" "$@"`)
	return append([]string{"sh", "-c", script.String()}, argv...)
}

func prepareSmbd(_ context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	for _, d := range []string{"lock", "state", "cache", "private", "ncalrpc", "share", "binddns"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return nil, err
		}
	}
	conf, err := c.write("smb.conf", fmt.Sprintf(`[global]
	netbios name = %[1]s
	workgroup = EXPOSURE
	server string = exposure lab
	server role = standalone server
	interfaces = %[2]s %[3]s
	bind interfaces only = yes
	smb ports = 445 139
	disable netbios = yes
	pid directory = %[4]s
	lock directory = %[4]s/lock
	state directory = %[4]s/state
	cache directory = %[4]s/cache
	private dir = %[4]s/private
	ncalrpc dir = %[4]s/ncalrpc
	binddns dir = %[4]s/binddns
	log file = %[4]s/smbd.log.%%m
	passdb backend = tdbsam
	load printers = no
	printcap name = /dev/null
	disable spoolss = yes
	rpc start on demand helpers = no
[share]
	path = %[4]s/share
	read only = yes
	guest ok = yes
`, strings.ToUpper(strings.ReplaceAll(h.name, "-", "")), h.addr, h.addr6, c.dir))
	if err != nil {
		return nil, err
	}
	return []string{"smbd", "--foreground", "--no-process-group", "--debug-stdout", "--configfile=" + conf}, nil
}

func prepareXrdp(_ context.Context, c *daemonContext) ([]string, error) {
	cert, key, err := c.tlsFiles()
	if err != nil {
		return nil, err
	}
	// Port 3389 on the wildcard: inside the namespace that is the host's
	// addresses, IPv4 and IPv6. xrdp's pid file and session sockets live under /run/xrdp, a
	// compiled-in path: privateRun gives it a directory of its own.
	conf, err := c.write("xrdp.ini", fmt.Sprintf(`[Globals]
ini_version=1
fork=true
port=3389
use_vsock=false
security_layer=negotiate
crypt_level=high
certificate=%[1]s
key_file=%[2]s
ssl_protocols=TLSv1.2, TLSv1.3
[Logging]
LogFile=%[3]s/xrdp-session.log
LogLevel=INFO
EnableSyslog=false
[Xorg]
name=Xorg
lib=libxup.so
username=ask
password=ask
ip=127.0.0.1
port=-1
code=20
`, cert, key, c.dir))
	if err != nil {
		return nil, err
	}
	return privateRun([]string{"/run/xrdp"}, []string{"xrdp", "--nodaemon", "--config", conf}), nil
}

// slapdSuffix is the naming context of the lab's directory.
const slapdSuffix = "dc=lab,dc=example"

func prepareSlapd(_ context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	db := c.path("db")
	if err := os.MkdirAll(db, 0o700); err != nil {
		return nil, err
	}
	cert, key, err := c.tlsFiles()
	if err != nil {
		return nil, err
	}
	conf, err := c.write("slapd.conf", fmt.Sprintf(`include /etc/ldap/schema/core.schema
pidfile %[1]s/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCertificateFile %[3]s
TLSCertificateKeyFile %[4]s
database mdb
suffix "%[5]s"
rootdn "cn=admin,%[5]s"
directory %[2]s
maxsize 10485760
`, c.dir, db, cert, key, slapdSuffix))
	if err != nil {
		return nil, err
	}
	return []string{"slapd", "-d", "0", "-f", conf, "-h",
		fmt.Sprintf("ldap://%[1]s/ ldap://[%[2]s]/ ldaps://%[1]s/ ldaps://[%[2]s]/", h.addr, h.addr6)}, nil
}

// KerberosRealm is the realm of the lab's KDC.
const KerberosRealm = "LAB.EXAMPLE"

func prepareKrb5kdc(ctx context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	krb5, err := c.write("krb5.conf", fmt.Sprintf(`[libdefaults]
	default_realm = %[1]s
	dns_lookup_kdc = false
[realms]
	%[1]s = {
		kdc = %[2]s
	}
`, KerberosRealm, h.addr))
	if err != nil {
		return nil, err
	}
	kdc, err := c.write("kdc.conf", fmt.Sprintf(`[kdcdefaults]
	kdc_listen = %[2]s:88
	kdc_tcp_listen = %[2]s:88 [%[3]s]:88
[realms]
	%[1]s = {
		database_name = %[4]s/principal
		key_stash_file = %[4]s/stash
		acl_file = %[4]s/kadm5.acl
	}
[logging]
	kdc = STDERR
`, KerberosRealm, h.addr, h.addr6, c.dir))
	if err != nil {
		return nil, err
	}
	env := []string{"KRB5_CONFIG=" + krb5, "KRB5_KDC_PROFILE=" + kdc}
	// A fresh database with its master key stashed, so the KDC starts
	// without a prompt.
	args := append(append([]string{}, env...), "kdb5_util", "-r", KerberosRealm, "create", "-s", "-P", "exposure-lab-master")
	if _, err := run(ctx, nil, "env", args...); err != nil {
		return nil, err
	}
	return append(append([]string{"env"}, env...), "krb5kdc", "-n", "-r", KerberosRealm, "-P", c.path("krb5kdc.pid")), nil
}

func prepareRpcbind(_ context.Context, c *daemonContext) ([]string, error) {
	// rpcbind's socket (/run/rpcbind.sock) and state directory are
	// compiled in; -h limits its UDP sockets to the host's addresses.
	return privateRun([]string{"/run", "/run/rpcbind"}, []string{"rpcbind", "-f", "-w", "-h", c.host.addr.String(), "-h", c.host.addr6.String()}), nil
}

func prepareCupsd(_ context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	for _, d := range []string{"cache", "state", "spool", "tmp", "log", "serverroot"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return nil, err
		}
	}
	if _, err := c.write("serverroot/printers.conf", ""); err != nil {
		return nil, err
	}
	// cupsd treats a configuration without a loopback listener as fatal
	// and signals its process group; the namespace's loopback is its own.
	conf, err := c.write("cupsd.conf", fmt.Sprintf(`Listen 127.0.0.1:631
Listen %[1]s:631
Listen [%[2]s]:631
Browsing Off
WebInterface Yes
LogLevel warn
<Location />
  Order allow,deny
  Allow all
</Location>
`, h.addr, h.addr6))
	if err != nil {
		return nil, err
	}
	// cupsd refuses to run its filters as root; lp and lpadmin come with
	// the package.
	files, err := c.write("cups-files.conf", fmt.Sprintf(`User lp
Group lp
SystemGroup lpadmin
ServerRoot %[1]s/serverroot
CacheDir %[1]s/cache
StateDir %[1]s/state
RequestRoot %[1]s/spool
TempDir %[1]s/tmp
ErrorLog stderr
AccessLog %[1]s/log/access_log
PageLog %[1]s/log/page_log
`, c.dir))
	if err != nil {
		return nil, err
	}
	return []string{"cupsd", "-f", "-c", conf, "-s", files}, nil
}

func prepareNgircdTLS(_ context.Context, c *daemonContext) ([]string, error) {
	cert, key, err := c.tlsFiles()
	if err != nil {
		return nil, err
	}
	// ngircd reads the key after dropping to nobody.
	if err := os.Chmod(key, 0o644); err != nil {
		return nil, err
	}
	return ngircdArgs(c, "", fmt.Sprintf("[SSL]\n\tCertFile = %s\n\tKeyFile = %s\n\tPorts = 6697\n", cert, key))
}
