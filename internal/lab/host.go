package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Host is one network namespace on the lab bridge. Its addresses passed the
// route check before the Host was returned.
type Host struct {
	lab   *Lab
	name  string
	ns    string
	veth  string
	off   int // offset of the host's addresses in the lab's blocks
	addr  netip.Addr
	addr6 netip.Addr
	mac   net.HardwareAddr // of eth0, set up by configureHost

	mu        sync.Mutex
	listeners map[uint16][]net.Listener

	fwMu    sync.Mutex
	fwReady bool // the lab's iptables chains exist
}

var hostName = regexp.MustCompile(`^[a-z][a-z0-9]{0,31}$`)

// AddHost is NewHost for tests: it fails the test on error.
func (l *Lab) AddHost(name string) *Host {
	hs, err := l.newHosts(context.Background(), []string{name})
	l.must(err)
	return hs[0]
}

// AddHosts is NewHosts for tests: it fails the test on error.
func (l *Lab) AddHosts(n int) []*Host {
	hs, err := l.NewHosts(context.Background(), n)
	l.must(err)
	return hs
}

// NewHost creates a namespace host with the lab's next addresses. name is
// 1-32 lowercase letters and digits, starting with a letter.
func (l *Lab) NewHost(ctx context.Context, name string) (*Host, error) {
	hs, err := l.newHosts(ctx, []string{name})
	if err != nil {
		return nil, err
	}
	return hs[0], nil
}

// NewHosts creates n hosts named h<offset> in a few batched ip(8) calls; each
// is a namespace of its own, so each has its own listeners and closed ports.
func (l *Lab) NewHosts(ctx context.Context, n int) ([]*Host, error) {
	if n < 1 {
		return nil, fmt.Errorf("add hosts: n=%d, want at least 1", n)
	}
	l.mu.Lock()
	next := l.nextOff
	l.mu.Unlock()
	names := make([]string, n)
	for i := range names {
		names[i] = "h" + strconv.Itoa(next+i)
	}
	return l.newHosts(ctx, names)
}

func (l *Lab) must(err error) {
	if err == nil {
		return
	}
	if l.tb == nil {
		panic(fmt.Sprintf("lab: %v (use the error-returning methods outside tests)", err))
	}
	l.tb.Helper()
	l.tb.Fatalf("%v", err)
}

func (l *Lab) newHosts(ctx context.Context, names []string) ([]*Host, error) {
	start := time.Now()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("add host: lab is closed")
	}
	if l.nextOff-2+len(names) > maxHosts {
		l.mu.Unlock()
		return nil, fmt.Errorf("add host: a lab holds at most %d hosts, have %d, asked for %d more", maxHosts, l.nextOff-2, len(names))
	}
	hosts := make([]*Host, len(names))
	for i, name := range names {
		if !hostName.MatchString(name) {
			l.mu.Unlock()
			return nil, fmt.Errorf("add host %q: name must match %s", name, hostName)
		}
		if _, dup := l.byName[name]; dup {
			l.mu.Unlock()
			return nil, fmt.Errorf("add host %q: name already used", name)
		}
		// Offsets are never reused, not even those of hosts whose setup
		// failed: their veth names may still exist.
		off := l.nextOff
		l.nextOff++
		h := &Host{
			lab:       l,
			name:      name,
			ns:        fmt.Sprintf("%s-%s", l.bridge, name),
			veth:      fmt.Sprintf("el%dh%d", l.index, off),
			off:       off,
			addr:      l.hostAddr4(off),
			addr6:     l.hostAddr6(off),
			listeners: map[uint16][]net.Listener{},
		}
		// Registered before the namespace exists so Close removes it even if
		// the setup below fails half-way.
		l.hosts = append(l.hosts, h)
		l.byName[name] = h
		hosts[i] = h
	}
	l.mu.Unlock()

	if err := l.setupHosts(ctx, hosts); err != nil {
		l.forget(hosts)
		return nil, err
	}
	addrs := make([]netip.Addr, 0, 2*len(hosts))
	for _, h := range hosts {
		addrs = append(addrs, h.addr, h.addr6)
	}
	if err := l.checkRoutes(ctx, addrs); err != nil {
		l.forget(hosts)
		return nil, fmt.Errorf("add host: %w", err)
	}
	l.logger.Debug("hosts up", "n", len(hosts), "took", time.Since(start).Round(time.Millisecond))
	return hosts, nil
}

// forget drops hosts whose setup failed from the lab's list so that no
// accessor hands them out; their namespaces still go at Close.
func (l *Lab) forget(hosts []*Host) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hosts = slices.DeleteFunc(l.hosts, func(h *Host) bool { return slices.Contains(hosts, h) })
}

func (l *Lab) setupHosts(ctx context.Context, hosts []*Host) error {
	var root strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&root, "netns add %s\n", h.ns)
		fmt.Fprintf(&root, "link add %s type veth peer name eth0 netns %s\n", h.veth, h.ns)
		// No IPv6 link-local address on the bridge port: it would only add
		// neighbour discovery noise to the lab.
		fmt.Fprintf(&root, "link set dev %s addrgenmode none\n", h.veth)
		fmt.Fprintf(&root, "link set %s master %s up\n", h.veth, l.bridge)
	}
	if _, err := runIP(ctx, strings.NewReader(root.String()), "-batch", "-"); err != nil {
		return fmt.Errorf("add host: create namespaces and veths: %w", err)
	}
	var errs []error
	for _, h := range hosts {
		if err := configureHost(h, l.hostAddr4(1), l.hostAddr6(1), l.mac); err != nil {
			errs = append(errs, fmt.Errorf("add host %s: configure namespace: %w", h.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return l.addNeighbours(hosts)
}

// addNeighbours gives the bridge a permanent neighbour entry for each
// host's addresses, as configureHost gives each host one for the bridge's.
// No ARP or neighbour discovery runs in a lab, and, more to the point,
// permanent entries do not count toward the kernel's neighbour table limits
// (net.ipv4.neigh.default.gc_thresh3: 1,024 entries, shared by every
// namespace). A 254-host lab needs 508 learned entries, so two or three
// labs at once overflowed the table: every new entry then forced a garbage
// collection or failed, and scans of the lab slowed 2-3x and lost packets.
func (l *Lab) addNeighbours(hosts []*Host) error {
	br, err := net.InterfaceByName(l.bridge)
	if err != nil {
		return fmt.Errorf("add host: find bridge: %w", err)
	}
	nl, err := dialNetlink()
	if err != nil {
		return fmt.Errorf("add host: %w", err)
	}
	defer nl.close()
	for _, h := range hosts {
		for _, a := range []netip.Addr{h.addr, h.addr6} {
			if err := nl.addNeighbour(br.Index, a, h.mac); err != nil {
				return fmt.Errorf("add host %s: %w", h.name, err)
			}
		}
	}
	return nil
}

// Name is the host's name within the lab.
func (h *Host) Name() string { return h.name }

// Namespace is the name of the host's network namespace (ip netns).
func (h *Host) Namespace() string { return h.ns }

// Addr is the host's IPv4 address; it passed the route check.
func (h *Host) Addr() netip.Addr { return h.addr }

// Addr6 is the host's IPv6 address; it passed the route check.
func (h *Host) Addr6() netip.Addr { return h.addr6 }

// Lab is the lab the host belongs to.
func (h *Host) Lab() *Lab { return h.lab }

// Exec runs a command inside the host's namespace and returns its combined
// output.
func (h *Host) Exec(ctx context.Context, args ...string) ([]byte, error) {
	if len(args) == 0 {
		return nil, errors.New("exec: no command")
	}
	return run(ctx, nil, "ip", append([]string{"netns", "exec", h.ns}, args...)...)
}

// SetLoss makes the host drop incoming packets (IPv4 and IPv6) at random
// with probability p, using iptables' statistic match inside the namespace.
// p = 0 removes the loss. Neighbour discovery is exempt, as ARP is for IPv4:
// loss is for the packets a scan sends, not for finding the host.
func (h *Host) SetLoss(ctx context.Context, p float64) error {
	if p < 0 || p > 1 || p != p {
		return fmt.Errorf("set loss %s: probability %v outside [0, 1]", h.name, p)
	}
	drop := ""
	if p > 0 {
		drop = "-A " + lossChain + " -m statistic --mode random --probability " + strconv.FormatFloat(p, 'f', 6, 64) + " -j DROP\n"
	}
	nd := ""
	if p > 0 {
		nd = "-A " + lossChain + " -p ipv6-icmp --icmpv6-type neighbour-solicitation -j ACCEPT\n" +
			"-A " + lossChain + " -p ipv6-icmp --icmpv6-type neighbour-advertisement -j ACCEPT\n"
	}
	// Declaring the chain flushes it, so the new rate replaces the old.
	if err := h.firewall(ctx, ":"+lossChain+" - [0:0]\n"+drop, ":"+lossChain+" - [0:0]\n"+nd+drop); err != nil {
		return fmt.Errorf("set loss %s: %w", h.name, err)
	}
	return nil
}

// Filter makes the host silently drop TCP packets to the ports (IPv4 and
// IPv6), so a scan sees them filtered whether or not something listens.
// Without ports it removes all filters.
func (h *Host) Filter(ctx context.Context, ports ...uint16) error {
	var rules strings.Builder
	if len(ports) == 0 {
		rules.WriteString(":" + filterChain + " - [0:0]\n")
	}
	for _, p := range ports {
		fmt.Fprintf(&rules, "-A %s -p tcp --dport %d -j DROP\n", filterChain, p)
	}
	if err := h.firewall(ctx, rules.String(), rules.String()); err != nil {
		return fmt.Errorf("filter %s: %w", h.name, err)
	}
	return nil
}

const (
	filterChain = "EXPLAB-FILTER"
	lossChain   = "EXPLAB-LOSS"
)

// firewall loads rules into the filter table of the host's namespace with
// iptables-restore --noflush, IPv4 and IPv6. The first call creates the
// lab's chains and hooks them into INPUT.
func (h *Host) firewall(ctx context.Context, rules4, rules6 string) error {
	h.fwMu.Lock()
	defer h.fwMu.Unlock()
	prefix := ""
	if !h.fwReady {
		prefix = ":" + filterChain + " - [0:0]\n:" + lossChain + " - [0:0]\n" +
			"-A INPUT -j " + filterChain + "\n-A INPUT -j " + lossChain + "\n"
	}
	for _, f := range []struct{ cmd, rules string }{{"iptables-restore", rules4}, {"ip6tables-restore", rules6}} {
		in := "*filter\n" + prefix + f.rules + "COMMIT\n"
		if _, err := run(ctx, strings.NewReader(in), "ip", "netns", "exec", h.ns, f.cmd, "-w", "--noflush"); err != nil {
			return err
		}
	}
	h.fwReady = true
	return nil
}

// ListeningPorts lists the TCP ports something listens on inside the host,
// as `ss -tln` run in the namespace shows them.
func (h *Host) ListeningPorts(ctx context.Context) ([]uint16, error) {
	out, err := h.Exec(ctx, "ss", "-H", "-t", "-l", "-n")
	if err != nil {
		return nil, fmt.Errorf("list ports of %s: %w", h.name, err)
	}
	var ports []uint16
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		i := strings.LastIndexByte(f[3], ':')
		p, err := strconv.ParseUint(f[3][i+1:], 10, 16)
		if err != nil {
			return nil, fmt.Errorf("list ports of %s: parse %q: %w", h.name, line, err)
		}
		if !slices.Contains(ports, uint16(p)) {
			ports = append(ports, uint16(p))
		}
	}
	slices.Sort(ports)
	return ports, nil
}

// Listen is ListenAddr for tests: it opens a dual-stack listener on port
// inside the host (the namespace holds only this host's addresses, so the
// wildcard address means "this host") that accepts and closes connections. It
// fails the test on error.
func (h *Host) Listen(port uint16) net.Listener {
	ln, err := h.ListenAddr(netip.AddrPortFrom(netip.IPv6Unspecified(), port), "")
	h.lab.must(err)
	return ln
}

// ListenAddr opens a TCP listener inside the host's namespace on ap, whose
// address must be one of the host's or unspecified (all of them). The lab
// serves it: each connection gets banner (if not empty) and is closed.
// Closing the returned listener, Close(port) or the lab's Close closes the
// port.
func (h *Host) ListenAddr(ap netip.AddrPort, banner string) (net.Listener, error) {
	ln, err := h.RawListener(ap)
	if err != nil {
		return nil, err
	}
	go serve(ln, banner)
	return ln, nil
}

// RawListener opens a TCP listener inside the host's namespace like
// ListenAddr, but leaves accepting connections to the caller.
func (h *Host) RawListener(ap netip.AddrPort) (net.Listener, error) {
	a := ap.Addr().Unmap()
	if !a.IsUnspecified() && a != h.addr && a != h.addr6 {
		return nil, fmt.Errorf("listen %s on %s: not one of the host's addresses %s, %s", ap, h.name, h.addr, h.addr6)
	}
	address := ap.String()
	if a.IsUnspecified() {
		address = ":" + strconv.Itoa(int(ap.Port()))
	}
	var ln net.Listener
	err := h.do(func() error {
		var err error
		ln, err = net.Listen("tcp", address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s on %s: %w", address, h.name, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.listeners == nil { // closed meanwhile
		ln.Close()
		return nil, fmt.Errorf("listen %s on %s: lab is closed", address, h.name)
	}
	h.listeners[ap.Port()] = append(h.listeners[ap.Port()], ln)
	return ln, nil
}

// Close closes every listener the lab opened on port in this host.
func (h *Host) Close(port uint16) error {
	h.mu.Lock()
	lns := h.listeners[port]
	delete(h.listeners, port)
	h.mu.Unlock()
	if len(lns) == 0 {
		return fmt.Errorf("close %s port %d: no listener", h.name, port)
	}
	var errs []error
	for _, ln := range lns {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (h *Host) closeListeners() {
	h.mu.Lock()
	all := h.listeners
	h.listeners = nil
	h.mu.Unlock()
	for _, lns := range all {
		for _, ln := range lns {
			ln.Close()
		}
	}
}

// do runs fn on an OS thread that has joined the host's network namespace,
// so sockets fn creates live there (see inNamespace).
func (h *Host) do(fn func() error) error { return inNamespace(h.ns, fn) }

// inNamespace runs fn on an OS thread that has joined network namespace ns
// (a name under /run/netns). The thread returns to its namespace
// afterwards; if it cannot, it stays locked and exits with the goroutine
// rather than run other goroutines in the wrong namespace.
func inNamespace(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// serve accepts connections until ln is closed, writing banner to each and
// closing it.
func serve(ln net.Listener, banner string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off instead of spinning.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if banner != "" {
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Write([]byte(banner))
		}
		c.Close()
	}
}
