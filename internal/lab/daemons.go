package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// Daemons returns the real daemons the lab can start. Each listens on the
// host's IPv4 and IPv6 addresses (Prometheus and Alertmanager take one
// listen address, so they use the wildcard, which inside the namespace means
// the same) and uses only files under the lab's directory, never a system
// instance's.
func Daemons() []Daemon {
	return []Daemon{
		{Name: "sshd", Services: map[uint16]string{22: "ssh"}, Ports: []uint16{22}, Binaries: []string{"sshd", "ssh-keygen"}, Banner: "SSH-2.0-OpenSSH", prepare: prepareSSHD},
		{Name: "nginx", Services: map[uint16]string{80: "http", 443: "ssl/http"}, Ports: []uint16{80, 443}, Binaries: []string{"nginx"}, prepare: prepareNginx, stop: syscall.SIGQUIT},
		{Name: "redis", Services: map[uint16]string{6379: "redis"}, Ports: []uint16{6379}, Binaries: []string{"redis-server"}, prepare: prepareRedis},
		{Name: "postgresql", Services: map[uint16]string{5432: "postgresql"}, Ports: []uint16{5432}, Binaries: []string{"postgres", "initdb", "setpriv"}, prepare: preparePostgres, stop: syscall.SIGINT},
		{Name: "memcached", Services: map[uint16]string{11211: "memcached"}, Ports: []uint16{11211}, Binaries: []string{"memcached"}, prepare: prepareMemcached},
		{Name: "proftpd", Services: map[uint16]string{21: "ftp"}, Ports: []uint16{21}, Binaries: []string{"proftpd"}, Banner: "220 ", prepare: prepareProftpd},
		{Name: "exim", Services: map[uint16]string{25: "smtp", 587: "smtp"}, Ports: []uint16{25, 587}, Binaries: []string{"exim4"}, Banner: "220 ", prepare: prepareExim},
		{Name: "dovecot", Services: map[uint16]string{110: "pop3", 143: "imap", 993: "ssl/imap", 995: "ssl/pop3"}, Ports: []uint16{110, 143, 993, 995}, Binaries: []string{"dovecot"}, Banner: "+OK", prepare: prepareDovecot},
		{Name: "mosquitto", Services: map[uint16]string{1883: "mqtt"}, Ports: []uint16{1883}, Binaries: []string{"mosquitto"}, prepare: prepareMosquitto},
		{Name: "named", Services: map[uint16]string{53: "domain"}, Ports: []uint16{53}, Binaries: []string{"named"}, prepare: prepareNamed},
		{Name: "prometheus", Services: map[uint16]string{9090: "http"}, Ports: []uint16{9090}, Binaries: []string{"prometheus"}, prepare: preparePrometheus},
		{Name: "alertmanager", Services: map[uint16]string{9093: "http"}, Ports: []uint16{9093}, Binaries: []string{"prometheus-alertmanager"}, prepare: prepareAlertmanager},
	}
}

// DaemonGroup is a set of TCP daemons that runs on a lab host of its own
// (the groups' ports overlap).
type DaemonGroup struct {
	Name    string // "daemons", "services", "windows"
	Daemons []Daemon
}

// DaemonGroups returns the TCP daemon groups in order: Daemons,
// ServiceDaemons, WindowsDaemons, FourthDaemons and FifthDaemons, the
// whole lab of service detection.
func DaemonGroups() []DaemonGroup {
	return []DaemonGroup{{"daemons", Daemons()}, {"services", ServiceDaemons()}, {"windows", WindowsDaemons()}, {"fourth", FourthDaemons()}, {"fifth", FifthDaemons()}}
}

// DaemonByName returns the daemon of any of DaemonGroups() with that name.
func DaemonByName(name string) (Daemon, bool) {
	var all []Daemon
	for _, g := range DaemonGroups() {
		all = append(all, g.Daemons...)
	}
	for _, d := range all {
		if d.Name == name {
			return d, true
		}
	}
	return Daemon{}, false
}

// DaemonPorts returns the TCP ports the daemons open, in the order given.
func DaemonPorts(ds []Daemon) []uint16 {
	var ports []uint16
	for _, d := range ds {
		ports = append(ports, d.Ports...)
	}
	return ports
}

func prepareSSHD(ctx context.Context, c *daemonContext) ([]string, error) {
	key := c.path("ssh_host_ed25519_key")
	if _, err := run(ctx, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "exposure-lab", "-f", key); err != nil {
		return nil, err
	}
	// Privilege separation directory that sshd insists on; creating it does
	// not touch a system sshd.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, err
	}
	h := c.host
	conf, err := c.write("sshd_config", fmt.Sprintf(`Port 22
ListenAddress %s
ListenAddress %s
HostKey %s
PidFile %s
UsePAM no
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile none
UseDNS no
`, h.addr, h.addr6, key, c.path("sshd.pid")))
	if err != nil {
		return nil, err
	}
	return []string{"sshd", "-D", "-e", "-f", conf}, nil
}

func prepareNginx(_ context.Context, c *daemonContext) ([]string, error) {
	cert, key, err := c.tlsFiles()
	if err != nil {
		return nil, err
	}
	h := c.host
	conf, err := c.write("nginx.conf", fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen %[2]s:80;
		listen [%[3]s]:80;
		listen %[2]s:443 ssl;
		listen [%[3]s]:443 ssl;
		server_name %[4]s.lab.example;
		ssl_certificate %[5]s;
		ssl_certificate_key %[6]s;
		default_type text/plain;
		location / { return 200 "exposure lab %[4]s\n"; }
	}
}
`, c.dir, h.addr, h.addr6, h.name, cert, key))
	if err != nil {
		return nil, err
	}
	return []string{"nginx", "-p", c.dir, "-c", conf, "-e", "stderr"}, nil
}

func prepareRedis(_ context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	return []string{"redis-server", "--bind", h.addr.String(), h.addr6.String(), "--port", "6379",
		"--dir", c.dir, "--save", "", "--appendonly", "no", "--daemonize", "no",
		"--protected-mode", "no", "--logfile", "", "--pidfile", c.path("redis.pid")}, nil
}

func preparePostgres(ctx context.Context, c *daemonContext) ([]string, error) {
	tmpl, err := postgresTemplate(ctx)
	if err != nil {
		return nil, err
	}
	data := c.path("data")
	// cp -a keeps the owner (postgres) and mode (0700) postgres insists on.
	if _, err := run(ctx, nil, "cp", "-a", tmpl, data); err != nil {
		return nil, fmt.Errorf("copy database template: %w", err)
	}
	postgres, err := lookPath("postgres")
	if err != nil {
		return nil, err
	}
	h := c.host
	// setpriv execs (no fork like runuser), so the lab's signals reach
	// postgres itself.
	return []string{"setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--",
		postgres, "-D", data,
		"-c", fmt.Sprintf("listen_addresses=%s,%s", h.addr, h.addr6),
		"-c", "port=5432",
		"-c", "unix_socket_directories=",
		"-c", "fsync=off",
		"-c", "logging_collector=off",
		"-c", "shared_buffers=16MB",
	}, nil
}

// postgresTemplate returns a data directory made by initdb, shared by all
// labs on the machine: initdb takes seconds, a copy a fraction of that. It is
// built under a temporary name and renamed into place, so a concurrent lab
// never sees half of one.
func postgresTemplate(ctx context.Context) (string, error) {
	initdb, err := lookPath("initdb")
	if err != nil {
		return "", err
	}
	// Keyed by the PostgreSQL major version: /usr/lib/postgresql/15/bin/initdb.
	resolved, err := filepath.EvalSymlinks(initdb)
	if err != nil {
		return "", err
	}
	version := filepath.Base(filepath.Dir(filepath.Dir(resolved)))
	root := filepath.Join(os.TempDir(), "exposure-lab-cache")
	final := filepath.Join(root, "pgdata-"+version)
	if _, err := os.Stat(filepath.Join(final, "PG_VERSION")); err == nil {
		return final, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(root, "pgdata-tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // gone after the rename, or a failed attempt
	if err := os.Chmod(tmp, 0o700); err != nil {
		return "", err
	}
	if err := chownUser(tmp, "postgres"); err != nil {
		return "", err
	}
	uid, gid, err := lookupUser("postgres")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, initdb, "-D", tmp, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C")
	cmd.Dir = tmp
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("initdb: %w: %s", err, tail(string(out), 1000))
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another lab finished first; use its template.
		if _, serr := os.Stat(filepath.Join(final, "PG_VERSION")); serr == nil {
			return final, nil
		}
		return "", fmt.Errorf("install database template: %w", err)
	}
	return final, nil
}

func prepareMemcached(_ context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	return []string{"memcached", "-u", "nobody", "-l", h.addr.String(), "-l", "[" + h.addr6.String() + "]",
		"-p", "11211", "-U", "0", "-m", "16", "-P", c.path("memcached.pid")}, nil
}

func prepareProftpd(_ context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	for _, f := range []string{"ftpd.passwd", "ftpd.group"} {
		if err := os.WriteFile(c.path(f), nil, 0o600); err != nil {
			return nil, err
		}
	}
	conf, err := c.write("proftpd.conf", fmt.Sprintf(`ServerName "exposure lab %[3]s"
ServerType standalone
DefaultServer on
Port 21
DefaultAddress %[1]s %[2]s
SocketBindTight on
UseIPv6 on
User nobody
Group nogroup
PidFile %[4]s/proftpd.pid
ScoreboardFile %[4]s/proftpd.scoreboard
SystemLog NONE
TransferLog NONE
WtmpLog off
UseReverseDNS off
MaxInstances 50
<IfModule mod_delay.c>
DelayEngine off
</IfModule>
<IfModule mod_ident.c>
IdentLookups off
</IfModule>
# No logins: the only user database is an empty file.
AuthOrder mod_auth_file.c
AuthUserFile %[4]s/ftpd.passwd
AuthGroupFile %[4]s/ftpd.group
`, h.addr, h.addr6, h.name, c.dir))
	if err != nil {
		return nil, err
	}
	return []string{"proftpd", "--nodaemon", "-c", conf}, nil
}

func prepareExim(_ context.Context, c *daemonContext) ([]string, error) {
	cert, key, err := c.tlsFiles()
	if err != nil {
		return nil, err
	}
	// Exim drops to its own user for logs, spool and TLS.
	if err := chownUser(key, "Debian-exim"); err != nil {
		return nil, err
	}
	v, err := c.mkdirOwned("var", "Debian-exim", 0o750)
	if err != nil {
		return nil, err
	}
	h := c.host
	conf, err := c.write("exim.conf", fmt.Sprintf(`keep_environment =
primary_hostname = %[3]s.lab.example
spool_directory = %[4]s/spool
log_file_path = %[4]s/%%slog
pid_file_path = %[4]s/exim.pid
daemon_smtp_ports = 25 : 587
local_interfaces = <; %[1]s ; %[2]s
tls_advertise_hosts = *
tls_certificate = %[5]s
tls_privatekey = %[6]s
host_lookup =
rfc1413_hosts =
acl_smtp_rcpt = acl_check_rcpt
begin acl
acl_check_rcpt:
  deny message = lab host accepts no mail
begin routers
begin transports
`, h.addr, h.addr6, h.name, v, cert, key))
	if err != nil {
		return nil, err
	}
	return []string{"exim4", "-C", conf, "-bdf", "-oP", filepath.Join(v, "exim.pid")}, nil
}

func prepareDovecot(_ context.Context, c *daemonContext) ([]string, error) {
	cert, key, err := c.tlsFiles()
	if err != nil {
		return nil, err
	}
	h := c.host
	dh := ""
	if _, err := os.Stat("/usr/share/dovecot/dh.pem"); err == nil {
		dh = "ssl_dh = </usr/share/dovecot/dh.pem"
	}
	conf, err := c.write("dovecot.conf", fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = /dev/stderr
instance_name = explab-%[4]s
listen = %[2]s, %[3]s
protocols = imap pop3
ssl = yes
ssl_cert = <%[5]s
ssl_key = <%[6]s
%[7]s
default_login_user = dovenull
default_internal_user = dovecot
disable_plaintext_auth = yes
mail_location = mbox:/nonexistent
passdb {
  driver = static
  args = nopassword=n password=exposure-lab-unused
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
`, c.dir, h.addr, h.addr6, h.name, cert, key, dh))
	if err != nil {
		return nil, err
	}
	return []string{"dovecot", "-F", "-c", conf}, nil
}

func prepareMosquitto(_ context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	conf, err := c.write("mosquitto.conf", fmt.Sprintf(`listener 1883 %s
listener 1883 %s
allow_anonymous true
persistence false
log_dest stderr
user mosquitto
`, h.addr, h.addr6))
	if err != nil {
		return nil, err
	}
	return []string{"mosquitto", "-c", conf}, nil
}

func prepareNamed(_ context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	zone, err := c.write("lab.example.zone", fmt.Sprintf(`$TTL 300
@ IN SOA ns.lab.example. hostmaster.lab.example. 1 3600 600 86400 300
@ IN NS ns.lab.example.
ns IN A %[1]s
ns IN AAAA %[2]s
%[3]s IN A %[1]s
%[3]s IN AAAA %[2]s
`, h.addr, h.addr6, h.name))
	if err != nil {
		return nil, err
	}
	conf, err := c.write("named.conf", fmt.Sprintf(`options {
	directory "%[1]s";
	pid-file "%[1]s/named.pid";
	session-keyfile "%[1]s/session.key";
	managed-keys-directory "%[1]s";
	listen-on port 53 { %[2]s; };
	listen-on-v6 port 53 { %[3]s; };
	recursion no;
	dnssec-validation no;
	allow-transfer { none; };
};
controls { };
zone "lab.example" { type primary; file "%[4]s"; };
`, c.dir, h.addr, h.addr6, zone))
	if err != nil {
		return nil, err
	}
	return []string{"named", "-g", "-c", conf, "-n", "1"}, nil
}

func preparePrometheus(_ context.Context, c *daemonContext) ([]string, error) {
	conf, err := c.write("prometheus.yml", "global:\n  scrape_interval: 1h\nscrape_configs: []\n")
	if err != nil {
		return nil, err
	}
	return []string{"prometheus", "--config.file=" + conf, "--storage.tsdb.path=" + c.path("data"),
		"--web.listen-address=:9090", "--log.level=warn"}, nil
}

func prepareAlertmanager(_ context.Context, c *daemonContext) ([]string, error) {
	conf, err := c.write("alertmanager.yml", "route:\n  receiver: none\nreceivers:\n  - name: none\n")
	if err != nil {
		return nil, err
	}
	return []string{"prometheus-alertmanager", "--config.file=" + conf, "--storage.path=" + c.path("data"),
		"--web.listen-address=:9093", "--cluster.listen-address=",
		"--log.level=warn"}, nil
}
