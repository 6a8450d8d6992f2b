package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	maxLabs      = 256 // 198.18.0.0/15 holds 256 blocks of 512 addresses
	blockSize    = 512
	maxHosts     = blockSize - 3 // minus network, bridge and broadcast addresses
	bridgePrefix = "explab"
	lockDir      = "/run/exposure-lab"
	cmdTimeout   = 30 * time.Second
)

// Options configures Open.
type Options struct {
	// Logger receives progress and teardown messages; nil discards them.
	Logger *slog.Logger
}

// Lab is one allocated block of addresses with its bridge, hosts and
// processes. Close (or the test cleanup registered by New) removes all of it.
type Lab struct {
	logger *slog.Logger
	tb     testing.TB // set by New: the test helpers fail the test on error

	index   int
	bridge  string
	mac     net.HardwareAddr // the bridge's, fixed (see create)
	prefix4 netip.Prefix
	prefix6 netip.Prefix
	runDir  string
	lock    *os.File

	mu        sync.Mutex
	hosts     []*Host
	byName    map[string]*Host
	nextOff   int // address offset of the next host in the block
	procs     []*process
	closed    bool
	closeErr  error
	closeOnce sync.Once
}

// New opens a lab for a test and tears it down in t.Cleanup. It calls Require
// first, so it skips (or fails under EXPOSURE_LAB=required) where the lab
// cannot run.
func New(t testing.TB) *Lab {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := Open(ctx, Options{Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatalf("open lab: %v", err)
	}
	l.tb = t
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	return l
}

// Open allocates a free block, creates its bridge and returns the lab. The
// caller must Close it.
func Open(ctx context.Context, o Options) (*Lab, error) {
	if reason := missing(); reason != "" {
		return nil, errors.New(reason)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, fmt.Errorf("open lab: %w", err)
	}
	reapStale(ctx, logger)
	for k := 0; k < maxLabs; k++ {
		lock, ok, err := tryLock(k)
		if err != nil {
			return nil, fmt.Errorf("open lab: %w", err)
		}
		if !ok {
			continue
		}
		// The block is ours; anything left under its names is from a dead process.
		if err := teardownIndex(ctx, k, logger); err != nil {
			logger.Warn("removing stale lab", "index", k, "err", err)
		}
		l, err := create(ctx, k, lock, logger)
		if err != nil {
			lock.Close()
			if errors.Is(err, errBridgeExists) {
				continue
			}
			return nil, err
		}
		return l, nil
	}
	return nil, errors.New("open lab: all 256 lab blocks of 198.18.0.0/15 are in use")
}

var errBridgeExists = errors.New("bridge exists")

func create(ctx context.Context, k int, lock *os.File, logger *slog.Logger) (*Lab, error) {
	base4 := netip.AddrFrom4([4]byte{198, 18 + byte(k/128), byte((k % 128) * 2), 0})
	base6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x00, 0x02, 0, 0, 0, byte(k)})
	l := &Lab{
		logger:  logger.With("lab", bridgePrefix+strconv.Itoa(k)),
		index:   k,
		bridge:  bridgePrefix + strconv.Itoa(k),
		prefix4: netip.PrefixFrom(base4, 23),
		prefix6: netip.PrefixFrom(base6, 64),
		lock:    lock,
		byName:  map[string]*Host{},
		nextOff: 2,
		// Locally administered and fixed: a bridge with a kernel-chosen
		// address takes its lowest port's as ports come and go, and the
		// hosts' permanent neighbour entries name it.
		mac: net.HardwareAddr{0x02, 0x65, 0x78, 0x70, byte(k >> 8), byte(k)},
	}
	if _, err := runIP(ctx, nil, "link", "add", l.bridge, "address", l.mac.String(), "type", "bridge"); err != nil {
		if strings.Contains(err.Error(), "File exists") {
			return nil, errBridgeExists
		}
		return nil, fmt.Errorf("open lab: create bridge: %w", err)
	}
	fail := func(err error) (*Lab, error) {
		if terr := teardownIndex(context.Background(), k, logger); terr != nil {
			logger.Warn("removing half-built lab", "err", terr)
		}
		return nil, err
	}
	// The bridge's own addresses skip duplicate address detection so that
	// IPv6 works as soon as the first host is up.
	batch := fmt.Sprintf("link set %[1]s type bridge stp_state 0 forward_delay 0\n"+
		"addr add %[2]s/23 dev %[1]s\n"+
		"addr add %[3]s/64 dev %[1]s nodad\n"+
		"link set %[1]s up\n", l.bridge, l.hostAddr4(1), l.hostAddr6(1))
	if _, err := runIP(ctx, strings.NewReader(batch), "-batch", "-"); err != nil {
		return fail(fmt.Errorf("open lab: configure bridge %s: %w", l.bridge, err))
	}
	dir, err := os.MkdirTemp("", l.bridge+"-")
	if err != nil {
		return fail(fmt.Errorf("open lab: %w", err))
	}
	// Daemons drop privileges, so they must be able to walk into their dirs.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fail(fmt.Errorf("open lab: %w", err))
	}
	l.runDir = dir
	// The whole block, not only the hosts created later, must route into the
	// bridge: callers may scan the prefix.
	first, last := l.hostAddr4(2), l.hostAddr4(blockSize-2)
	if err := l.checkRoutes(ctx, []netip.Addr{first, last, l.hostAddr6(2), l.hostAddr6(0xffff)}); err != nil {
		return fail(fmt.Errorf("open lab: %w", err))
	}
	l.logger.Info("lab up", "prefix", l.prefix4, "prefix6", l.prefix6, "dir", dir)
	return l, nil
}

// Index is the lab's block number k (0..255).
func (l *Lab) Index() int { return l.index }

// Bridge is the name of the lab's bridge in the root namespace.
func (l *Lab) Bridge() string { return l.bridge }

// Prefix is the lab's IPv4 block; Open checked that all of it routes into the
// bridge.
func (l *Lab) Prefix() netip.Prefix { return l.prefix4 }

// Prefix6 is the lab's IPv6 /64; Open checked that it routes into the bridge.
func (l *Lab) Prefix6() netip.Prefix { return l.prefix6 }

// Gateway is the bridge's IPv4 address, the hosts' default route.
func (l *Lab) Gateway() netip.Addr { return l.hostAddr4(1) }

// Dir is the lab's scratch directory (daemon configs, logs, data).
func (l *Lab) Dir() string { return l.runDir }

// Hosts returns the lab's hosts in creation order.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.hosts...)
}

// Targets checks the route of every host address again and returns the
// IPv4 and IPv6 addresses of all hosts, IPv4 first.
func (l *Lab) Targets(ctx context.Context) ([]netip.Addr, error) {
	hosts := l.Hosts()
	addrs := make([]netip.Addr, 0, 2*len(hosts))
	for _, h := range hosts {
		addrs = append(addrs, h.addr)
	}
	for _, h := range hosts {
		addrs = append(addrs, h.addr6)
	}
	if err := l.checkRoutes(ctx, addrs); err != nil {
		return nil, err
	}
	return addrs, nil
}

func (l *Lab) hostAddr4(off int) netip.Addr {
	b := l.prefix4.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(off)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (l *Lab) hostAddr6(off int) netip.Addr {
	b := l.prefix6.Addr().As16()
	b[14], b[15] = byte(off>>8), byte(off)
	return netip.AddrFrom16(b)
}

// RouteError says why an address was refused.
type RouteError struct {
	Addr   netip.Addr
	Route  string // the route `ip route get` printed, or ""
	Reason string
}

func (e *RouteError) Error() string {
	if e.Route == "" {
		return fmt.Sprintf("route check: %s: %s", e.Addr, e.Reason)
	}
	return fmt.Sprintf("route check: %s: %s (route: %s)", e.Addr, e.Reason, e.Route)
}

// CheckRoute asks the kernel (`ip route get`, which sends nothing) where
// packets to addr would go and refuses unless that is this lab's bridge with
// addr inside the lab's block, or loopback for 127.0.0.0/8 and ::1.
func (l *Lab) CheckRoute(ctx context.Context, addr netip.Addr) error {
	return l.checkRoutes(ctx, []netip.Addr{addr})
}

type routeInfo struct {
	Type    string `json:"type"`
	Dst     string `json:"dst"`
	Dev     string `json:"dev"`
	Gateway string `json:"gateway"`
}

// checkRoutes runs one `ip -batch` with a route get per address.
func (l *Lab) checkRoutes(ctx context.Context, addrs []netip.Addr) error {
	if len(addrs) == 0 {
		return nil
	}
	for _, a := range addrs {
		if !a.IsValid() {
			return &RouteError{Addr: a, Reason: "invalid address"}
		}
		a = a.Unmap()
		if !a.IsLoopback() && !l.prefix4.Contains(a) && !l.prefix6.Contains(a) {
			return &RouteError{Addr: a, Reason: fmt.Sprintf("outside the lab's blocks %s and %s", l.prefix4, l.prefix6)}
		}
	}
	routes, lines, err := routesOf(ctx, addrs)
	if err != nil {
		// A failing line ends the batch (a RouteError without a route);
		// redo one by one to name the address.
		var re *RouteError
		if len(addrs) > 1 && errors.As(err, &re) && re.Route == "" {
			for _, a := range addrs {
				if err := l.checkRoutes(ctx, []netip.Addr{a}); err != nil {
					return err
				}
			}
		}
		return err
	}
	for i, a := range addrs {
		a = a.Unmap()
		r := routes[i]
		switch {
		case a.IsLoopback():
			if r.Dev != "lo" || r.Type != "local" {
				return &RouteError{Addr: a, Route: lines[i], Reason: "loopback address does not route to lo"}
			}
		case r.Dev != l.bridge:
			return &RouteError{Addr: a, Route: lines[i], Reason: fmt.Sprintf("does not route into lab bridge %s", l.bridge)}
		case r.Gateway != "":
			return &RouteError{Addr: a, Route: lines[i], Reason: "routes through a gateway"}
		case r.Type != "" && r.Type != "unicast":
			return &RouteError{Addr: a, Route: lines[i], Reason: fmt.Sprintf("route type %s", r.Type)}
		}
	}
	return nil
}

// routesOf asks the kernel where packets to addrs would go, in one
// `ip -j -batch` of route gets (which sends nothing), and returns each
// answer parsed and as its line. A failed batch is a RouteError for the
// first address without a route; a line that does not parse is a
// RouteError for its address with the line.
func routesOf(ctx context.Context, addrs []netip.Addr) ([]routeInfo, []string, error) {
	var in strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&in, "route get %s\n", a.Unmap())
	}
	out, err := runIP(ctx, strings.NewReader(in.String()), "-j", "-batch", "-")
	if err != nil {
		return nil, nil, &RouteError{Addr: addrs[0], Reason: "ip route get failed: " + err.Error()}
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(addrs) {
		return nil, nil, fmt.Errorf("route check: %d answers for %d addresses", len(lines), len(addrs))
	}
	routes := make([]routeInfo, len(addrs))
	for i, a := range addrs {
		var ri []routeInfo
		if err := json.Unmarshal([]byte(lines[i]), &ri); err != nil || len(ri) != 1 {
			return nil, nil, &RouteError{Addr: a.Unmap(), Route: lines[i], Reason: "cannot parse ip route get output"}
		}
		routes[i] = ri[0]
	}
	return routes, lines, nil
}

// Close kills every process the lab started, closes its listeners, deletes
// its hosts, bridge and scratch directory and releases the block.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		procs := l.procs
		hosts := l.hosts
		l.mu.Unlock()
		start := time.Now()
		var errs []error
		stopAll(procs)
		for _, h := range hosts {
			h.closeListeners()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := teardownIndex(ctx, l.index, l.logger); err != nil {
			errs = append(errs, err)
		}
		if l.runDir != "" {
			if err := os.RemoveAll(l.runDir); err != nil {
				errs = append(errs, fmt.Errorf("remove lab dir: %w", err))
			}
		}
		if err := l.lock.Close(); err != nil {
			errs = append(errs, fmt.Errorf("release lab lock: %w", err))
		}
		l.logger.Info("lab down", "hosts", len(hosts), "processes", len(procs), "took", time.Since(start).Round(time.Millisecond))
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// tryLock takes the block's lock file without waiting.
func tryLock(k int) (*os.File, bool, error) {
	f, err := os.OpenFile(filepath.Join(lockDir, strconv.Itoa(k)+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, false, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("lock lab %d: %w", k, err)
	}
	return f, true, nil
}

// reapStale removes labs whose bridge exists but whose lock nobody holds,
// i.e. labs of processes that died without cleaning up.
func reapStale(ctx context.Context, logger *slog.Logger) {
	out, err := runIP(ctx, nil, "-j", "link", "show", "type", "bridge")
	if err != nil {
		return
	}
	var links []struct {
		Name string `json:"ifname"`
	}
	if json.Unmarshal(out, &links) != nil {
		return
	}
	for _, ln := range links {
		k, ok := labIndex(ln.Name)
		if !ok {
			continue
		}
		lock, got, err := tryLock(k)
		if err != nil || !got {
			continue
		}
		logger.Info("removing lab of a dead process", "bridge", ln.Name)
		if err := teardownIndex(ctx, k, logger); err != nil {
			logger.Warn("removing stale lab", "bridge", ln.Name, "err", err)
		}
		lock.Close()
	}
}

func labIndex(bridge string) (int, bool) {
	s, ok := strings.CutPrefix(bridge, bridgePrefix)
	if !ok {
		return 0, false
	}
	k, err := strconv.Atoi(s)
	if err != nil || k < 0 || k >= maxLabs || strconv.Itoa(k) != s {
		return 0, false
	}
	return k, true
}

// teardownIndex removes everything named after block k: processes in its
// namespaces, the namespaces with their veths, the bridge and scratch
// directories. The caller holds k's lock.
func teardownIndex(ctx context.Context, k int, logger *slog.Logger) error {
	nsPrefix := fmt.Sprintf("%s%d-", bridgePrefix, k)
	vethPrefix := fmt.Sprintf("el%dh", k)
	var namespaces []string
	if out, err := runIP(ctx, nil, "netns", "list"); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], nsPrefix) {
				namespaces = append(namespaces, f[0])
			}
		}
	}
	killNamespaces(namespaces, logger)
	var errs []error
	if len(namespaces) > 0 {
		var batch strings.Builder
		for _, ns := range namespaces {
			fmt.Fprintf(&batch, "netns del %s\n", ns)
		}
		if _, err := runIP(ctx, strings.NewReader(batch.String()), "-force", "-batch", "-"); err != nil {
			errs = append(errs, fmt.Errorf("delete lab %d namespaces: %w", k, err))
		}
	}
	// The kernel frees a deleted namespace, and the veth pairs in it, a
	// moment later, in one batch: far faster than deleting veths one by one,
	// which costs an RCU grace period each. Wait for that, so the names are
	// free before the block is released; delete stragglers by hand.
	var veths []string
	hasBridge := false
	for deadline := time.Now().Add(20 * time.Second); ; {
		links, err := linkNames(ctx)
		if err != nil {
			errs = append(errs, err)
			break
		}
		veths = veths[:0]
		hasBridge = false
		for _, name := range links {
			if strings.HasPrefix(name, vethPrefix) {
				veths = append(veths, name)
			}
			if name == bridgePrefix+strconv.Itoa(k) {
				hasBridge = true
			}
		}
		if len(veths) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(veths) > 0 {
		var batch strings.Builder
		for _, v := range veths {
			fmt.Fprintf(&batch, "link del %s\n", v)
		}
		if _, err := runIP(ctx, strings.NewReader(batch.String()), "-force", "-batch", "-"); err != nil {
			errs = append(errs, fmt.Errorf("delete lab %d veths: %w", k, err))
		}
	}
	if hasBridge {
		if _, err := runIP(ctx, nil, "link", "del", bridgePrefix+strconv.Itoa(k)); err != nil {
			errs = append(errs, fmt.Errorf("delete lab bridge: %w", err))
		}
	}
	if dirs, err := filepath.Glob(filepath.Join(os.TempDir(), nsPrefix+"*")); err == nil {
		for _, d := range dirs {
			_ = os.RemoveAll(d)
		}
	}
	return errors.Join(errs...)
}

func linkNames(ctx context.Context) ([]string, error) {
	out, err := runIP(ctx, nil, "-j", "link", "show")
	if err != nil {
		return nil, err
	}
	var links []struct {
		Name string `json:"ifname"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("parse ip link output: %w", err)
	}
	names := make([]string, len(links))
	for i, l := range links {
		names[i] = l.Name
	}
	return names, nil
}

// killNamespaces kills every process inside the namespaces, except this
// process (one of whose threads may still sit in a namespace). It compares
// /proc/PID/ns/net with the namespaces' inodes: one pass over /proc instead
// of an `ip netns pids` per namespace.
func killNamespaces(namespaces []string, logger *slog.Logger) {
	if len(namespaces) == 0 {
		return
	}
	inodes := map[uint64]string{}
	for _, ns := range namespaces {
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/run/netns", ns), &st) == nil {
			inodes[st.Ino] = ns
		}
	}
	self := os.Getpid()
	for round := 0; round < 100; round++ {
		left := 0
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self || pid <= 1 {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st) != nil {
				continue
			}
			ns, ok := inodes[st.Ino]
			if !ok {
				continue
			}
			left++
			if round == 0 {
				logger.Debug("killing leftover process", "ns", ns, "pid", pid)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if left == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runIP runs ip(8) with args and optional stdin, returning stdout. The error
// carries stderr.
func runIP(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	return run(ctx, stdin, "ip", args...)
}

func run(ctx context.Context, stdin io.Reader, name string, args ...string) ([]byte, error) {
	path, err := lookPath(name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(shortArgs(args), " "), err, strings.TrimSpace(tail(stderr.String(), 400)))
	}
	return stdout.Bytes(), nil
}

func shortArgs(args []string) []string {
	if len(args) > 8 {
		return append(append([]string(nil), args[:8]...), "...")
	}
	return args
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// testWriter sends slog output to t.Log so it shows with the test.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
