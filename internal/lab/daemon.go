package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Daemon is a real Debian daemon the lab can run inside a host with its own
// configuration and data under the lab's directory. Daemons() lists them.
type Daemon struct {
	// Name identifies the daemon ("sshd", "nginx", ...).
	Name string
	// Ports are the TCP ports the daemon opens on the host's addresses;
	// Start waits for all of them.
	Ports []uint16
	// Binaries are the programs it needs (for RequireBinary).
	Binaries []string
	// Banner, if set, is a prefix the daemon sends first on Ports[0].
	Banner string
	// Services names what runs on each port the way nmap -sV does
	// ("ssh", "ssl/http", ...), for service detection tests.
	Services map[uint16]string
	// UDPPorts are the UDP ports the daemon binds on the host's addresses
	// (see UDPDaemons); Start waits until ss lists them.
	UDPPorts []uint16

	// prepare writes the configuration into c.dir and returns the command
	// that runs the daemon in the foreground.
	prepare func(ctx context.Context, c *daemonContext) ([]string, error)
	// stop is the signal for an orderly shutdown (SIGTERM if zero).
	stop syscall.Signal
	// ready, if set, waits after the ports accept connections until the
	// daemon serves (a JVM that listens before it answers).
	ready func(ctx context.Context, h *Host) error
}

// daemonContext is what a Daemon's prepare step gets.
type daemonContext struct {
	host *Host
	dir  string // private to this daemon instance, mode 0755, owned by root
}

func (c *daemonContext) path(name string) string { return filepath.Join(c.dir, name) }

func (c *daemonContext) write(name, content string) (string, error) {
	p := c.path(name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return p, nil
}

// mkdirOwned creates dir/name owned by the given system user.
func (c *daemonContext) mkdirOwned(name, owner string, mode os.FileMode) (string, error) {
	p := c.path(name)
	if err := os.MkdirAll(p, mode); err != nil {
		return "", err
	}
	if err := os.Chmod(p, mode); err != nil {
		return "", err
	}
	return p, chownUser(p, owner)
}

func chownUser(p, owner string) error {
	uid, gid, err := lookupUser(owner)
	if err != nil {
		return err
	}
	if err := os.Chown(p, uid, gid); err != nil {
		return fmt.Errorf("chown %s to %s: %w", p, owner, err)
	}
	return nil
}

func lookupUser(name string) (int, int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("look up user %s: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// tlsFiles writes a fresh self-signed ECDSA certificate for the host to
// cert.pem and key.pem in the daemon's directory.
func (c *daemonContext) tlsFiles() (cert, key string, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", fmt.Errorf("generate serial: %w", err)
	}
	h := c.host
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: h.name + ".lab.example", Organization: []string{"exposure lab"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{h.name + ".lab.example"},
		IPAddresses:           []net.IP{h.addr.AsSlice(), h.addr6.AsSlice()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return "", "", fmt.Errorf("create certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return "", "", fmt.Errorf("marshal key: %w", err)
	}
	cert, key = c.path("cert.pem"), c.path("key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", err
	}
	return cert, key, nil
}

// process is a daemon the lab started.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	stop syscall.Signal
	done chan struct{}
	err  error // valid after done
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logTail returns the end of the daemon's log, for error messages.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	s := strings.TrimSpace(string(b))
	lines := strings.Split(s, "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return tail(strings.Join(lines, "\n"), 2000)
}

// stopAll stops processes in parallel: the orderly signal to the process
// group, SIGKILL after a grace period.
func stopAll(procs []*process) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pgid := p.cmd.Process.Pid
			_ = syscall.Kill(-pgid, p.stop)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
			}
			// Children (nginx workers, postgres backends) share the group.
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}()
	}
	wg.Wait()
}

// StartAll starts every daemon of Daemons() on h, in parallel, and fails the
// test if one does not come up. It returns the daemons it started.
func StartAll(t testing.TB, h *Host) []Daemon {
	t.Helper()
	ds := Daemons()
	for _, d := range ds {
		RequireDaemon(t, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := h.StartDaemons(ctx, ds); err != nil {
		t.Fatalf("start daemons: %v", err)
	}
	return ds
}

// Start starts the named daemons of Daemons() on h for a test: it skips (or
// fails under EXPOSURE_LAB=required) when one is not installed and fails the
// test when one does not come up.
func Start(t testing.TB, h *Host, names ...string) []Daemon {
	t.Helper()
	var ds []Daemon
	for _, n := range names {
		d, ok := DaemonByName(n)
		if !ok {
			t.Fatalf("lab: no daemon named %q", n)
		}
		RequireDaemon(t, d)
		ds = append(ds, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := h.StartDaemons(ctx, ds); err != nil {
		t.Fatalf("start daemons: %v", err)
	}
	return ds
}

// StartDaemons starts the daemons on h in parallel and waits for all.
func (h *Host) StartDaemons(ctx context.Context, ds []Daemon) error {
	errs := make([]error, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.Start(ctx, d)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Start runs daemon d inside the host (ip netns exec, its own process group,
// config and data under the lab's directory) and waits until each of its
// ports accepts a TCP connection. The lab stops it at Close.
func (h *Host) Start(ctx context.Context, d Daemon) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	start := time.Now()
	l := h.lab
	for _, b := range d.Binaries {
		if _, err := lookPath(b); err != nil {
			return fmt.Errorf("start %s: %w", d.Name, err)
		}
	}
	dir := filepath.Join(l.runDir, h.name, d.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("start %s: %w", d.Name, err)
	}
	for p := dir; p != l.runDir; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			return fmt.Errorf("start %s: %w", d.Name, err)
		}
	}
	argv, err := d.prepare(ctx, &daemonContext{host: h, dir: dir})
	if err != nil {
		return fmt.Errorf("start %s on %s: prepare: %w", d.Name, h.name, err)
	}
	bin, err := lookPath(argv[0])
	if err != nil {
		return fmt.Errorf("start %s: %w", d.Name, err)
	}
	ip, err := lookPath("ip")
	if err != nil {
		return fmt.Errorf("start %s: %w", d.Name, err)
	}
	logPath := filepath.Join(dir, d.Name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", d.Name, err)
	}
	defer logf.Close()
	cmd := exec.Command(ip, append([]string{"netns", "exec", h.ns, bin}, argv[1:]...)...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir, "LANG=C"}
	// Own process group, so stopping kills the daemon's children too; and
	// SIGKILL if the test process dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stop := d.stop
	if stop == 0 {
		stop = syscall.SIGTERM
	}
	p := &process{name: d.Name, cmd: cmd, log: logPath, stop: stop, done: make(chan struct{})}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return fmt.Errorf("start %s: lab is closed", d.Name)
	}
	if err := cmd.Start(); err != nil {
		l.mu.Unlock()
		return fmt.Errorf("start %s: %w", d.Name, err)
	}
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	err = errors.Join(h.waitPorts(ctx, p, d.Ports), h.waitUDPPorts(ctx, p, d.UDPPorts))
	if err == nil && d.ready != nil {
		err = d.ready(ctx, h)
	}
	if err != nil {
		return fmt.Errorf("start %s on %s: %w\n--- %s log tail ---\n%s", d.Name, h.name, err, d.Name, p.logTail())
	}
	l.logger.Info("daemon up", "host", h.name, "daemon", d.Name, "ports", d.Ports, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// waitPorts polls until every port accepts a connection on the host's IPv4
// address, the daemon exits, or ctx ends.
func (h *Host) waitPorts(ctx context.Context, p *process, ports []uint16) error {
	var d net.Dialer
	for _, port := range ports {
		ap := netip.AddrPortFrom(h.addr, port)
		for {
			if p.exited() {
				return fmt.Errorf("exited before port %d opened: %v", port, p.err)
			}
			dctx, cancel := context.WithTimeout(ctx, time.Second)
			c, err := d.DialContext(dctx, "tcp", ap.String())
			cancel()
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("port %d did not open: %w (last error: %v)", port, ctx.Err(), err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
