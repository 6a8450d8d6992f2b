package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// unpackedRoot is where .ci/install-deps unpacks (dpkg -x) the Debian
// packages that conflict with ones the lab installs: each in a tree of its
// own, with the package's version in its VERSION file.
const unpackedRoot = "/opt/exposure-lab"

// unpacked returns path p inside the unpacked tree of Debian package pkg.
func unpacked(pkg, p string) string { return filepath.Join(unpackedRoot, pkg, p) }

// UnpackedVersion returns the Debian version ("3.0.3-13+b2") of a package
// the lab runs from its unpacked tree (vsftpd, postfix): dpkg-query does
// not know those, .ci/install-deps writes it from the package itself.
func UnpackedVersion(pkg string) (string, error) {
	b, err := os.ReadFile(unpacked(pkg, "VERSION"))
	if err != nil {
		return "", fmt.Errorf("version of unpacked %s (run .ci/install-deps as root): %w", pkg, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("version of unpacked %s: %s is empty", pkg, unpacked(pkg, "VERSION"))
	}
	return v, nil
}

const (
	vsftpdBin     = unpackedRoot + "/vsftpd/usr/sbin/vsftpd"
	postfixMaster = unpackedRoot + "/postfix/usr/lib/postfix/sbin/master"
)

// FifthDaemons returns the fifth group of real daemons: vsftpd and Postfix,
// the FTP and mail servers the first group's proftpd and Exim keep out of
// the installed packages (Debian's conflict: ftp-server,
// mail-transport-agent). They run from the packages' unpacked trees under
// /opt/exposure-lab (.ci/install-deps); like the other groups, each uses
// only files under the lab's directory, on a host of its own.
func FifthDaemons() []Daemon {
	return []Daemon{
		{Name: "vsftpd", Services: map[uint16]string{21: "ftp"}, Ports: []uint16{21}, Binaries: []string{vsftpdBin}, Banner: "220 (vsFTPd ", prepare: prepareVsftpd},
		{Name: "postfix", Services: map[uint16]string{25: "smtp", 587: "smtp"}, Ports: []uint16{25, 587}, Binaries: []string{postfixMaster, "env"}, Banner: "220 ", prepare: preparePostfix, ready: greets("220 ", 25, 587)},
	}
}

func prepareVsftpd(_ context.Context, c *daemonContext) ([]string, error) {
	// Both directories stay root's and empty: vsftpd refuses a secure
	// chroot or an anonymous root its unprivileged user could write.
	for _, d := range []string{"empty", "anon"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return nil, err
		}
	}
	// listen_ipv6 on the wildcard is the host's IPv4 and IPv6. Anonymous
	// read-only login as nobody keeps PAM (whose vsftpd service the
	// unpacked package does not install) out of it.
	conf, err := c.write("vsftpd.conf", fmt.Sprintf(`listen=NO
listen_ipv6=YES
listen_port=21
background=NO
anonymous_enable=YES
no_anon_password=YES
ftp_username=nobody
anon_root=%[1]s/anon
local_enable=NO
write_enable=NO
nopriv_user=nobody
secure_chroot_dir=%[1]s/empty
connect_from_port_20=NO
xferlog_enable=NO
syslog_enable=NO
vsftpd_log_file=%[1]s/vsftpd.xfer.log
`, c.dir))
	if err != nil {
		return nil, err
	}
	return []string{vsftpdBin, conf}, nil
}

// postfixQueueDirs are the queue's directories with Debian's owners and
// modes (postfix-files); master and its services create the rest.
var postfixQueueDirs = []struct {
	name, owner, group string
	mode               os.FileMode
}{
	{"pid", "root", "root", 0o755},
	{"active", "postfix", "", 0o700}, {"bounce", "postfix", "", 0o700},
	{"corrupt", "postfix", "", 0o700}, {"defer", "postfix", "", 0o700},
	{"deferred", "postfix", "", 0o700}, {"flush", "postfix", "", 0o700},
	{"hold", "postfix", "", 0o700}, {"incoming", "postfix", "", 0o700},
	{"private", "postfix", "", 0o700}, {"saved", "postfix", "", 0o700},
	{"trace", "postfix", "", 0o700},
	{"maildrop", "postfix", "postdrop", 0o730}, {"public", "postfix", "postdrop", 0o710},
}

func preparePostfix(_ context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	queue := c.path("queue")
	if err := os.MkdirAll(queue, 0o755); err != nil {
		return nil, err
	}
	for _, d := range postfixQueueDirs {
		p := filepath.Join(queue, d.name)
		if err := os.MkdirAll(p, d.mode); err != nil {
			return nil, err
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return nil, err
		}
		uid, gid, err := lookupUser(d.owner)
		if err != nil {
			return nil, err
		}
		if d.group != "" {
			g, err := lookupGroup(d.group)
			if err != nil {
				return nil, err
			}
			gid = g
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return nil, fmt.Errorf("chown %s: %w", p, err)
		}
	}
	if _, err := c.mkdirOwned("data", "postfix", 0o700); err != nil {
		return nil, err
	}
	// Debian's main.cf for a fresh install (its smtpd_banner says
	// "$myhostname ESMTP $mail_name (Debian/GNU)"), then the lab's
	// settings, which win where both set one. The unpacked binaries look
	// for their libpostfix-*.so in the package's /usr/lib/postfix
	// (RUNPATH), not in the tree: master is started with LD_LIBRARY_PATH,
	// and import_environment hands it on to the services it spawns. The
	// client's name is not looked up, since the namespace reaches no name
	// server. postlogd writes the log into the daemon's directory (no
	// syslog here).
	debian, err := os.ReadFile(unpacked("postfix", "usr/share/postfix/main.cf.debian"))
	if err != nil {
		return nil, err
	}
	libs := unpacked("postfix", "usr/lib/postfix")
	if _, err := c.write("main.cf", string(debian)+fmt.Sprintf(`
# exposure lab
myhostname = %[1]s.lab.example
mydomain = lab.example
myorigin = $myhostname
mydestination =
relayhost =
inet_interfaces = all
inet_protocols = all
queue_directory = %[2]s
data_directory = %[3]s
daemon_directory = %[4]s
command_directory = %[5]s
meta_directory = %[6]s
shlib_directory = %[7]s
mail_owner = postfix
setgid_group = postdrop
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH
maillog_file = %[8]s
maillog_file_prefixes = %[9]s
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
alias_maps =
alias_database =
`, h.name, queue, c.path("data"), unpacked("postfix", "usr/lib/postfix/sbin"), unpacked("postfix", "usr/sbin"),
		unpacked("postfix", "etc/postfix"), libs, c.path("maillog"), c.dir)); err != nil {
		return nil, err
	}
	// The services an smtpd needs to answer a session, none chrooted.
	if _, err := c.write("master.cf", `smtp       inet  n  -  n  -  -  smtpd
submission inet  n  -  n  -  -  smtpd
pickup     unix  n  -  n  60 1  pickup
cleanup    unix  n  -  n  -  0  cleanup
qmgr       unix  n  -  n  300 1 qmgr
rewrite    unix  -  -  n  -  -  trivial-rewrite
bounce     unix  -  -  n  -  0  bounce
defer      unix  -  -  n  -  0  bounce
trace      unix  -  -  n  -  0  bounce
verify     unix  -  -  n  -  1  verify
flush      unix  n  -  n  1000? 0 flush
proxymap   unix  -  -  n  -  -  proxymap
error      unix  -  -  n  -  -  error
retry      unix  -  -  n  -  -  error
discard    unix  -  -  n  -  -  discard
anvil      unix  -  -  n  -  1  anvil
scache     unix  -  -  n  -  1  scache
postlog    unix-dgram n - n -  1  postlogd
`); err != nil {
		return nil, err
	}
	// master -d stays in the foreground; -c names the lab's configuration.
	return []string{"env", "LD_LIBRARY_PATH=" + libs, postfixMaster, "-d", "-c", c.dir}, nil
}

func lookupGroup(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("look up group %s: %w", name, err)
	}
	return strconv.Atoi(g.Gid)
}

// greets waits until each port's first line starts with prefix: Postfix's
// master listens before it has spawned an smtpd, and a fatal error in the
// configuration ends it only then, after the ports accepted connections.
func greets(prefix string, ports ...uint16) func(ctx context.Context, h *Host) error {
	return func(ctx context.Context, h *Host) error {
		for _, port := range ports {
			if err := pollReply(ctx, netip.AddrPortFrom(h.addr, port), nil, 2*time.Second, prefix,
				fmt.Sprintf("port %d sent no %q greeting", port, prefix)); err != nil {
				return err
			}
		}
		return nil
	}
}
