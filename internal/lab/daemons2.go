package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// ServiceDaemons returns the second group of real daemons: chat, version
// control, proxies and caches, a remote framebuffer, a TLS wrapper, and
// daemons on ports that belong to other services, so service detection is
// measured on what it must find by behaviour (the directory server is in
// WindowsDaemons, with LDAPS). Like Daemons, each uses only files under
// the lab's directory; they run on a host of their own (their ports
// overlap the first group's).
func ServiceDaemons() []Daemon {
	return []Daemon{
		{Name: "svnserve", Services: map[uint16]string{3690: "svnserve"}, Ports: []uint16{3690}, Binaries: []string{"svnserve", "svnadmin"}, Banner: "( success", prepare: prepareSvnserve},
		{Name: "git-daemon", Services: map[uint16]string{9418: "git"}, Ports: []uint16{9418}, Binaries: []string{"git"}, prepare: prepareGitDaemon},
		{Name: "ngircd", Services: map[uint16]string{6667: "irc"}, Ports: []uint16{6667}, Binaries: []string{"ngircd"}, prepare: prepareNgircd},
		// HAProxy with no backend server answers 503 on 8080, and the
		// same frontend on 22: an HTTP server on the SSH port.
		{Name: "haproxy", Services: map[uint16]string{8080: "http-proxy", 22: "http-proxy"}, Ports: []uint16{8080, 22}, Binaries: []string{"haproxy"}, prepare: prepareHAProxy},
		{Name: "tinyproxy", Services: map[uint16]string{8888: "http-proxy"}, Ports: []uint16{8888}, Binaries: []string{"tinyproxy"}, prepare: prepareTinyproxy},
		{Name: "varnish", Services: map[uint16]string{6081: "http-proxy", 6082: "varnish-cli"}, Ports: []uint16{6081, 6082}, Binaries: []string{"varnishd"}, prepare: prepareVarnish},
		// stunnel wraps the IRC server (ssl/irc on 6697) and svnserve on
		// 443, a port that belongs to HTTPS. (ngircd throttles a source
		// address that connects often, so one wrapped IRC port is enough.)
		{Name: "stunnel", Services: map[uint16]string{6697: "ssl/irc", 443: "ssl/svnserve"}, Ports: []uint16{6697, 443}, Binaries: []string{"stunnel4"}, prepare: prepareStunnel},
		// Tomcat from the Debian package: 8180 serves the package's ROOT
		// page, 8181 an engine with no application (its error page names
		// the version).
		{Name: "tomcat", Services: map[uint16]string{8180: "http", 8181: "http"}, Ports: []uint16{8180, 8181}, Binaries: []string{"java"}, prepare: prepareTomcat},
		{Name: "tigervnc", Services: map[uint16]string{5901: "vnc"}, Ports: []uint16{5901}, Binaries: []string{"Xtigervnc"}, Banner: "RFB ", prepare: prepareTigerVNC},
	}
}

func prepareSvnserve(ctx context.Context, c *daemonContext) ([]string, error) {
	repo := c.path("repo")
	if _, err := run(ctx, nil, "svnadmin", "create", repo); err != nil {
		return nil, err
	}
	return []string{"svnserve", "--daemon", "--foreground", "--listen-host", c.host.addr.String(), "--listen-port", "3690", "--root", repo}, nil
}

func prepareGitDaemon(_ context.Context, c *daemonContext) ([]string, error) {
	base := c.path("repos")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	h := c.host
	return []string{"git", "daemon", "--reuseaddr", "--informative-errors", "--export-all",
		"--listen=" + h.addr.String(), "--listen=" + h.addr6.String(), "--port=9418", "--base-path=" + base, base}, nil
}

func prepareNgircd(_ context.Context, c *daemonContext) ([]string, error) {
	return ngircdArgs(c, "6667", "")
}

// ngircdArgs writes the lab's ngircd.conf with plain ports (a list, or
// "") and extra sections, and returns the command line.
func ngircdArgs(c *daemonContext, ports, extra string) ([]string, error) {
	h := c.host
	motd, err := c.write("motd", "exposure lab\n")
	if err != nil {
		return nil, err
	}
	conf, err := c.write("ngircd.conf", fmt.Sprintf(`[Global]
	Name = irc.%[1]s.lab.example
	Info = exposure lab
	Listen = %[2]s,%[3]s
	Ports = %[6]s
	PidFile = %[4]s/ngircd.pid
	MotdFile = %[5]s
	ServerUID = nobody
	ServerGID = nogroup
[Limits]
	MaxConnectionsIP = 0
	ConnectRetry = 60
[Options]
	PAM = no
	Ident = no
	DNS = no
`, h.name, h.addr, h.addr6, c.dir, motd, ports)+extra)
	if err != nil {
		return nil, err
	}
	return []string{"ngircd", "--nodaemon", "--config", conf}, nil
}

func prepareHAProxy(_ context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	conf, err := c.write("haproxy.cfg", fmt.Sprintf(`global
	pidfile %[1]s/haproxy.pid
defaults
	mode http
	timeout connect 1s
	timeout client 5s
	timeout server 5s
frontend web
	bind %[2]s:8080
	bind [%[3]s]:8080
	bind %[2]s:22
	default_backend none
backend none
`, c.dir, h.addr, h.addr6))
	if err != nil {
		return nil, err
	}
	return []string{"haproxy", "-db", "-f", conf}, nil
}

func prepareTinyproxy(_ context.Context, c *daemonContext) ([]string, error) {
	conf, err := c.write("tinyproxy.conf", fmt.Sprintf(`User nobody
Group nogroup
Port 8888
Listen %s
Timeout 5
MaxClients 20
PidFile "%s/tinyproxy.pid"
`, c.host.addr, c.dir))
	if err != nil {
		return nil, err
	}
	return []string{"tinyproxy", "-d", "-c", conf}, nil
}

func prepareVarnish(_ context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	// No backend listens on port 1: every request is a 503 from varnish.
	return []string{"varnishd", "-F", "-n", c.path("varnish"), "-a", fmt.Sprintf("%s:6081", h.addr),
		"-a", fmt.Sprintf("[%s]:6081", h.addr6), "-b", "127.0.0.1:1", "-T", fmt.Sprintf("%s:6082", h.addr),
		"-S", "none", "-s", "malloc,16m"}, nil
}

func prepareStunnel(_ context.Context, c *daemonContext) ([]string, error) {
	cert, key, err := c.tlsFiles()
	if err != nil {
		return nil, err
	}
	h := c.host
	conf, err := c.write("stunnel.conf", fmt.Sprintf(`foreground = yes
pid = %[1]s/stunnel.pid
cert = %[2]s
key = %[3]s
[irc]
accept = %[4]s:6697
connect = %[4]s:6667
[svn-on-https]
accept = %[4]s:443
connect = %[4]s:3690
`, c.dir, cert, key, h.addr))
	if err != nil {
		return nil, err
	}
	return []string{"stunnel4", conf}, nil
}

func prepareTigerVNC(_ context.Context, c *daemonContext) ([]string, error) {
	// A display number of its own keeps the X socket apart from others';
	// -nolisten unix keeps it out of /tmp/.X11-unix altogether.
	return []string{"Xtigervnc", ":57", "-rfbport", "5901", "-SecurityTypes", "None", "-nolisten", "unix",
		"-nolisten", "tcp", "-geometry", "640x480", "-desktop", "exposure-lab"}, nil
}

// tomcatHome is where the Debian tomcat10 package keeps Tomcat's jars.
const tomcatHome = "/usr/share/tomcat10"

func prepareTomcat(_ context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	for _, d := range []string{"conf", "logs", "temp", "work", "webapps/ROOT", "empty"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return nil, err
		}
	}
	// The servlet defaults (web.xml) and class loaders (catalina.properties)
	// are the package's; the ROOT page is the one it installs.
	for src, dst := range map[string]string{
		"/etc/tomcat10/web.xml":                     "conf/web.xml",
		"/etc/tomcat10/catalina.properties":         "conf/catalina.properties",
		"/var/lib/tomcat10/webapps/ROOT/index.html": "webapps/ROOT/index.html",
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("tomcat: %w", err)
		}
		if _, err := c.write(dst, string(b)); err != nil {
			return nil, err
		}
	}
	service := func(name string, port int, appBase string) string {
		return fmt.Sprintf(`  <Service name="%[1]s">
    <Connector address="%[2]s" port="%[4]d" protocol="HTTP/1.1" connectionTimeout="5000"/>
    <Connector address="%[3]s" port="%[4]d" protocol="HTTP/1.1" connectionTimeout="5000"/>
    <Engine name="%[1]s" defaultHost="localhost">
      <Host name="localhost" appBase="%[5]s" unpackWARs="false" autoDeploy="false"/>
    </Engine>
  </Service>
`, name, h.addr, h.addr6, port, appBase)
	}
	if _, err := c.write("conf/server.xml", `<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
`+service("Catalina", 8180, c.path("webapps"))+service("Empty", 8181, c.path("empty"))+`</Server>
`); err != nil {
		return nil, err
	}
	cp := filepath.Join(tomcatHome, "bin", "bootstrap.jar") + ":" + filepath.Join(tomcatHome, "bin", "tomcat-juli.jar")
	return []string{"java", "-Xmx128m", "-XX:TieredStopAtLevel=1", "-Djava.security.egd=file:/dev/urandom",
		"-Djava.io.tmpdir=" + c.path("temp"), "-Dcatalina.home=" + tomcatHome, "-Dcatalina.base=" + c.dir,
		"-cp", cp, "org.apache.catalina.startup.Bootstrap", "start"}, nil
}
