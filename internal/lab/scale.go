package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Scale lab limits: a /16 is the largest prefix (128 blocks, half of
// 198.18.0.0/15, so the other half stays free for the other labs); a /23,
// one block, the smallest.
const (
	MinScaleBits = 16
	MaxScaleBits = 23
)

// ScalePorts are the ports the scale lab serves on every address: 80 is
// open everywhere, 22 on the even addresses only (see ScaleLab.Open).
var scalePorts = []uint16{22, 80}

// The scale lab's services, so that -sV has something to name on each of
// its open ports and a cheap re-check something to compare: an OpenSSH
// banner on 22, an nginx answer on 80, and the banner of the port that
// ScaleLab.OpenExtra opens.
const (
	ScaleSSHBanner   = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
	ScaleHTTPServer  = "nginx/1.22.1"
	ScaleExtraBanner = "SSH-2.0-OpenSSH_9.6\r\n"
)

// ScalePorts returns the TCP ports a scale lab listens on.
func ScalePorts() []uint16 { return append([]uint16(nil), scalePorts...) }

// ScaleOptions configures OpenScale.
type ScaleOptions struct {
	// Bits is the length of the prefix the lab answers for, MinScaleBits
	// (a /16: 65,536 addresses) to MaxScaleBits.
	Bits int
	// Logger receives progress and teardown messages; nil discards them.
	Logger *slog.Logger
}

func (o ScaleOptions) validate() error {
	if o.Bits < MinScaleBits || o.Bits > MaxScaleBits {
		return fmt.Errorf("scale lab: prefix length /%d: want /%d to /%d", o.Bits, MinScaleBits, MaxScaleBits)
	}
	return nil
}

// ScaleLab is one network namespace that answers for a whole prefix of
// 198.18.0.0/15: a local route (`ip route add local PREFIX dev lo`) makes
// every address of the prefix the namespace's own, and listeners on the
// wildcard address serve them all. The root namespace routes the prefix
// through one veth pair via one gateway address (the namespace's end of the
// veth, in a link block of its own), so the kernel keeps a single, permanent
// neighbour entry however large the prefix.
//
// The truth is computable: port 80 is open on every address of the prefix,
// port 22 on the even ones (an iptables rule answers SYNs to 22 on odd
// addresses with a reset, so they are closed), every other port is closed.
//
// The lab claims the blocks of the prefix and the link block with the same
// flocks as Open, so it never overlaps another lab, and it is named after
// its first block (namespace explab<k>-scale, veth el<k>hscale), so a lab
// of a dead process is removed by teardownIndex like any other.
type ScaleLab struct {
	logger *slog.Logger
	first  int // the prefix's first block
	prefix netip.Prefix
	local  netip.Addr // the root namespace's end of the veth
	gw     netip.Addr // the namespace's end: the prefix's gateway
	ns     string
	veth   string
	locks  []*os.File
	blocks []int

	mu        sync.Mutex
	listeners []net.Listener
	closeOnce sync.Once
	closeErr  error
}

const scaleChain = "EXPLAB-SCALE"

// NewScale opens a scale lab with a /bits prefix for a test and tears it
// down in t.Cleanup. It skips (or fails under EXPOSURE_LAB=required) where
// the lab cannot run.
func NewScale(t testing.TB, bits int) *ScaleLab {
	t.Helper()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := OpenScale(ctx, ScaleOptions{Bits: bits, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatalf("open scale lab: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close scale lab: %v", err)
		}
	})
	return s
}

// OpenScale claims a free, aligned run of blocks for the prefix (searching
// from the top of 198.18.0.0/15, away from the blocks Open hands out first)
// plus one link block, builds the namespace and checks the routes. The
// caller must Close it.
func OpenScale(ctx context.Context, o ScaleOptions) (*ScaleLab, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if reason := missing(); reason != "" {
		return nil, errors.New(reason)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, fmt.Errorf("open scale lab: %w", err)
	}
	n := 1 << (MaxScaleBits - o.Bits) // blocks in the prefix
	s := &ScaleLab{}
	for first := maxLabs - n; first >= 0 && s.locks == nil; first -= n {
		locks, ok, err := lockRun(first, n)
		if err != nil {
			return nil, fmt.Errorf("open scale lab: %w", err)
		}
		if !ok {
			continue
		}
		// The link block: the nearest free block below the prefix, or
		// above it.
		var linkLock *os.File
		link := -1
		for _, k := range linkCandidates(first, n) {
			l, got, err := tryLock(k)
			if err != nil {
				releaseLocks(locks)
				return nil, fmt.Errorf("open scale lab: %w", err)
			}
			if got {
				linkLock, link = l, k
				break
			}
		}
		if linkLock == nil {
			releaseLocks(locks)
			continue
		}
		s.first = first
		s.locks = append(locks, linkLock)
		for k := first; k < first+n; k++ {
			s.blocks = append(s.blocks, k)
		}
		s.blocks = append(s.blocks, link)
		base := blockBase(first)
		s.prefix = netip.PrefixFrom(base, o.Bits)
		lb := blockBase(link).As4()
		s.local = netip.AddrFrom4([4]byte{lb[0], lb[1], lb[2], 1})
		s.gw = netip.AddrFrom4([4]byte{lb[0], lb[1], lb[2], 2})
	}
	if s.locks == nil {
		return nil, fmt.Errorf("open scale lab: no free aligned run of %d blocks (a /%d) plus a link block in 198.18.0.0/15", n, o.Bits)
	}
	s.ns = fmt.Sprintf("%s%d-scale", bridgePrefix, s.first)
	s.veth = fmt.Sprintf("el%dhscale", s.first)
	s.logger = logger.With("scale_lab", s.ns)
	// The blocks are ours; anything left under their names is from a dead
	// process.
	for _, k := range s.blocks {
		if err := teardownIndex(ctx, k, logger); err != nil {
			logger.Warn("removing stale lab", "index", k, "err", err)
		}
	}
	start := time.Now()
	if err := s.create(ctx); err != nil {
		if cerr := s.Close(); cerr != nil {
			logger.Warn("removing half-built scale lab", "err", cerr)
		}
		return nil, err
	}
	s.logger.Info("scale lab up", "prefix", s.prefix, "interface", s.veth, "gateway", s.gw, "took", time.Since(start).Round(time.Millisecond))
	return s, nil
}

// lockRun takes the locks of blocks first..first+n-1, all or none.
func lockRun(first, n int) ([]*os.File, bool, error) {
	locks := make([]*os.File, 0, n)
	for k := first; k < first+n; k++ {
		l, ok, err := tryLock(k)
		if err != nil || !ok {
			releaseLocks(locks)
			return nil, false, err
		}
		locks = append(locks, l)
	}
	return locks, true, nil
}

func releaseLocks(locks []*os.File) {
	for _, l := range locks {
		l.Close()
	}
}

// linkCandidates lists the blocks outside first..first+n-1, nearest first.
func linkCandidates(first, n int) []int {
	var out []int
	for d := 1; d < maxLabs; d++ {
		if k := first - d; k >= 0 {
			out = append(out, k)
		}
		if k := first + n - 1 + d; k < maxLabs {
			out = append(out, k)
		}
	}
	return out
}

func blockBase(k int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18 + byte(k/128), byte((k % 128) * 2), 0})
}

// Fixed, locally administered MACs, as for the bridges: the permanent
// neighbour entries name them.
func (s *ScaleLab) macs() (root, ns net.HardwareAddr) {
	return net.HardwareAddr{0x02, 0x65, 0x78, 0x73, 0x00, byte(s.first)},
		net.HardwareAddr{0x02, 0x65, 0x78, 0x73, 0x01, byte(s.first)}
}

func (s *ScaleLab) create(ctx context.Context) error {
	rootMAC, nsMAC := s.macs()
	root := fmt.Sprintf("netns add %[1]s\n"+
		"link add %[2]s address %[3]s type veth peer name eth0 address %[4]s netns %[1]s\n"+
		"link set dev %[2]s addrgenmode none\n"+
		"addr add %[5]s/30 dev %[2]s\n"+
		"link set %[2]s up\n", s.ns, s.veth, rootMAC, nsMAC, s.local)
	if _, err := runIP(ctx, strings.NewReader(root), "-batch", "-"); err != nil {
		return fmt.Errorf("open scale lab: create namespace and veth: %w", err)
	}
	inside := fmt.Sprintf("link set dev eth0 addrgenmode none\n"+
		"link set lo up\n"+
		"link set eth0 up\n"+
		"addr add %[1]s/30 dev eth0\n"+
		"route add local %[2]s dev lo\n"+
		"route add default via %[3]s dev eth0\n"+
		"neigh replace %[3]s lladdr %[4]s dev eth0 nud permanent\n", s.gw, s.prefix, s.local, rootMAC)
	if _, err := runIP(ctx, strings.NewReader(inside), "-n", s.ns, "-batch", "-"); err != nil {
		return fmt.Errorf("open scale lab: configure namespace %s: %w", s.ns, err)
	}
	// The route goes in last: until the namespace answers, nothing of the
	// prefix routes anywhere but where it did before (nowhere, in a lab
	// machine's 198.18.0.0/15).
	back := fmt.Sprintf("neigh replace %[1]s lladdr %[2]s dev %[3]s nud permanent\n"+
		"route add %[4]s via %[1]s dev %[3]s\n", s.gw, nsMAC, s.veth, s.prefix)
	if _, err := runIP(ctx, strings.NewReader(back), "-batch", "-"); err != nil {
		return fmt.Errorf("open scale lab: route %s: %w", s.prefix, err)
	}
	rules := "*filter\n:" + scaleChain + " - [0:0]\n-A INPUT -j " + scaleChain + "\n" +
		"-A " + scaleChain + " -p tcp --dport 22 -d 0.0.0.1/0.0.0.1 -j REJECT --reject-with tcp-reset\nCOMMIT\n"
	if _, err := run(ctx, strings.NewReader(rules), "ip", "netns", "exec", s.ns, "iptables-restore", "-w", "--noflush"); err != nil {
		return fmt.Errorf("open scale lab: firewall of %s: %w", s.ns, err)
	}
	for _, p := range scalePorts {
		var ln net.Listener
		err := inNamespace(s.ns, func() error {
			var err error
			ln, err = net.Listen("tcp4", "0.0.0.0:"+strconv.Itoa(int(p)))
			return err
		})
		if err != nil {
			return fmt.Errorf("open scale lab: listen on port %d in %s: %w", p, s.ns, err)
		}
		s.mu.Lock()
		s.listeners = append(s.listeners, ln)
		s.mu.Unlock()
		if p == 80 {
			go serveHTTP(ln, ScaleHTTPServer)
		} else {
			go serve(ln, ScaleSSHBanner)
		}
	}
	last := s.Addr(uint64(1)<<(32-s.prefix.Bits()) - 1)
	return s.checkRoutes(ctx, []netip.Addr{s.prefix.Addr(), s.Addr(1), last})
}

// OpenExtra opens port on the single address a of the prefix, with the
// ScaleExtraBanner: the port a scan of the estate must find opened, with
// its service. It is closed with the lab.
func (s *ScaleLab) OpenExtra(a netip.Addr, port uint16) error {
	if !s.prefix.Contains(a) {
		return fmt.Errorf("scale lab: %s is not in %s", a, s.prefix)
	}
	var ln net.Listener
	err := inNamespace(s.ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(a, port).String())
		return err
	})
	if err != nil {
		return fmt.Errorf("scale lab: listen on %s port %d: %w", a, port, err)
	}
	s.mu.Lock()
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	go serve(ln, ScaleExtraBanner)
	return nil
}

// serveHTTP answers every request on ln with an empty 200 from server,
// as a web server's default page would, and anything that is not HTTP
// (a TLS ClientHello) at once with a 400, as nginx does; then it closes the
// connection.
func serveHTTP(ln net.Listener, server string) {
	ok := []byte("HTTP/1.1 200 OK\r\nServer: " + server + "\r\nContent-Type: text/html\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	bad := []byte("HTTP/1.1 400 Bad Request\r\nServer: " + server + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 0, 1024)
			tmp := make([]byte, 512)
			for !bytes.Contains(buf, []byte("\r\n\r\n")) && len(buf) < 8192 {
				n, err := c.Read(tmp)
				buf = append(buf, tmp[:n]...)
				if len(buf) > 0 && (buf[0] < 'A' || buf[0] > 'Z') {
					_, _ = c.Write(bad)
					return
				}
				if err != nil {
					return
				}
			}
			_, _ = c.Write(ok)
		}()
	}
}

// Prefix is the prefix the lab answers for; OpenScale checked that it
// routes into the lab's veth.
func (s *ScaleLab) Prefix() netip.Prefix { return s.prefix }

// Interface is the root namespace's end of the lab's veth: bind scans to it
// (-e) so that no probe can leave through another interface.
func (s *ScaleLab) Interface() string { return s.veth }

// Gateway is the address the root namespace routes the prefix through.
func (s *ScaleLab) Gateway() netip.Addr { return s.gw }

// Namespace is the name of the lab's network namespace (ip netns).
func (s *ScaleLab) Namespace() string { return s.ns }

// Size is the number of addresses in the prefix.
func (s *ScaleLab) Size() uint64 { return uint64(1) << (32 - s.prefix.Bits()) }

// Addr is the i-th address of the prefix, 0 <= i < Size().
func (s *ScaleLab) Addr(i uint64) netip.Addr {
	b := s.prefix.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) + uint32(i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Open reports whether TCP port is open on a: 80 on every address of the
// prefix, 22 on the even ones, nothing else.
func (s *ScaleLab) Open(a netip.Addr, port uint16) bool {
	if !s.prefix.Contains(a) {
		return false
	}
	switch port {
	case 80:
		return true
	case 22:
		return a.As4()[3]&1 == 0
	}
	return false
}

// OpenCount is the number of open (address, port) pairs in the prefix.
func (s *ScaleLab) OpenCount() uint64 { return s.Size() + s.Size()/2 }

// CheckRoute asks the kernel (`ip route get`, which sends nothing) where
// packets to addr would go and refuses unless addr is in the prefix and
// routes via the lab's gateway into its veth.
func (s *ScaleLab) CheckRoute(ctx context.Context, addr netip.Addr) error {
	return s.checkRoutes(ctx, []netip.Addr{addr})
}

func (s *ScaleLab) checkRoutes(ctx context.Context, addrs []netip.Addr) error {
	for _, a := range addrs {
		if !a.IsValid() || !s.prefix.Contains(a.Unmap()) {
			return &RouteError{Addr: a, Reason: fmt.Sprintf("outside the scale lab's prefix %s", s.prefix)}
		}
	}
	routes, lines, err := routesOf(ctx, addrs)
	if err != nil {
		return err
	}
	for i, a := range addrs {
		ri := routes[i]
		switch {
		case ri.Dev != s.veth:
			return &RouteError{Addr: a, Route: lines[i], Reason: fmt.Sprintf("does not route into scale lab veth %s", s.veth)}
		case ri.Gateway != s.gw.String():
			return &RouteError{Addr: a, Route: lines[i], Reason: fmt.Sprintf("does not route via the scale lab's gateway %s", s.gw)}
		case ri.Type != "" && ri.Type != "unicast":
			return &RouteError{Addr: a, Route: lines[i], Reason: fmt.Sprintf("route type %s", ri.Type)}
		}
	}
	return nil
}

// Close closes the listeners, deletes the namespace (and with it the veth
// and the route) and releases the blocks.
func (s *ScaleLab) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		lns := s.listeners
		s.listeners = nil
		s.mu.Unlock()
		for _, ln := range lns {
			ln.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var errs []error
		if err := teardownIndex(ctx, s.first, s.logger); err != nil {
			errs = append(errs, err)
		}
		releaseLocks(s.locks)
		s.logger.Info("scale lab down")
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}
