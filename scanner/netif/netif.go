// Package netif binds a scan's sockets to one network interface, as nmap's
// -e does: every socket gets SO_BINDTODEVICE, and a connection or probe to a
// destination the routing table does not reach through that interface is
// refused before anything is sent.
//
// SO_BINDTODEVICE alone is not enough: with the output interface fixed, the
// kernel treats a destination it has no route for through that interface as
// on-link and sends there anyway (ARP on the wrong segment). So before a
// socket connects, Control asks the routing table (RTM_GETROUTE with
// RTM_F_FIB_MATCH and the interface as RTA_OIF; that sends nothing) whether
// a route through the interface covers the destination.
package netif

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"unicode"

	"golang.org/x/sys/unix"
)

// maxNameLen is IFNAMSIZ minus the terminating NUL.
const maxNameLen = unix.IFNAMSIZ - 1

// ErrNoRoute is wrapped by the errors of destinations that have no route
// through the bound interface.
var ErrNoRoute = errors.New("no route via interface")

// NoRouteError says that Addr is not reachable through Interface.
type NoRouteError struct {
	Interface string
	Addr      netip.Addr
}

func (e *NoRouteError) Error() string { return "no route via " + e.Interface }

// Is makes errors.Is(err, ErrNoRoute) hold.
func (e *NoRouteError) Is(target error) bool { return target == ErrNoRoute }

// CheckName checks the syntax of an interface name: what the kernel accepts
// (dev_valid_name: 1 to 15 bytes, not "." or "..", no '/', ':' or white
// space), further limited to printable ASCII, since the name ends up in
// logs and errors.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("interface name is empty")
	case len(name) > maxNameLen:
		return fmt.Errorf("interface name %q: longer than %d bytes", name, maxNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q: not a valid name", name)
	case strings.ContainsAny(name, "/:"):
		return fmt.Errorf("interface name %q: must not contain '/' or ':'", name)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) || r > unicode.MaxASCII {
			return fmt.Errorf("interface name %q: must not contain white space or control characters", name)
		}
	}
	return nil
}

// index returns the index of the interface called name (already checked),
// or an error naming it when there is none.
func index(name string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("interface %q: %w", name, err)
	}
	defer unix.Close(fd)
	return indexOn(fd, name)
}

func indexOn(fd int, name string) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, fmt.Errorf("interface %q: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return 0, fmt.Errorf("interface %q: no such network interface", name)
		}
		return 0, fmt.Errorf("interface %q: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}

// Bind binds socket fd to the interface called name.
func Bind(fd int, name string) error {
	if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, name); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("bind to interface %q: no such network interface", name)
		}
		return fmt.Errorf("bind to interface %q: %w", name, err)
	}
	return nil
}

// Binding is the interface a scan is bound to. It is made once, where a
// scan's parts are wired (the scan command, the daemon's configuration), and
// handed to every part that opens sockets: the engines, service detection
// and the sweep's resolver. A nil *Binding binds nothing.
type Binding struct {
	name string
}

// New returns the binding to the interface called name, or nil for "". Only
// the syntax is checked: the interface may appear later (the daemon's
// global.interface), and is looked up whenever a socket is bound.
func New(name string) (*Binding, error) {
	if name == "" {
		return nil, nil
	}
	if err := CheckName(name); err != nil {
		return nil, err
	}
	return &Binding{name: name}, nil
}

// Open is New for an interface that must exist now (a one-off scan's -e),
// or nil for "".
func Open(name string) (*Binding, error) {
	b, err := New(name)
	if err == nil {
		err = b.Check()
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Name is the interface name, "" for none.
func (b *Binding) Name() string {
	if b == nil {
		return ""
	}
	return b.name
}

// Check returns an error naming the interface when it does not exist now.
func (b *Binding) Check() error {
	_, err := b.Index()
	return err
}

// Index is the interface's index now (it changes when the interface is made
// again), 0 for a nil binding.
func (b *Binding) Index() (int, error) {
	if b == nil {
		return 0, nil
	}
	return index(b.name)
}

// BindFD binds socket fd to the interface; nothing for a nil binding.
func (b *Binding) BindFD(fd int) error {
	if b == nil {
		return nil
	}
	return Bind(fd, b.name)
}

// Route returns nil when the routing table reaches dst through the
// interface, a *NoRouteError when it does not. It sends nothing.
func (b *Binding) Route(dst netip.Addr) error {
	if b == nil {
		return nil
	}
	idx, err := index(b.name)
	if err != nil {
		return err
	}
	return b.route(idx, dst)
}

func (b *Binding) route(idx int, dst netip.Addr) error {
	ok, err := routeVia(dst.Unmap(), idx)
	if err != nil {
		return fmt.Errorf("route to %v via %s: %w", dst, b.name, err)
	}
	if !ok {
		return &NoRouteError{Interface: b.name, Addr: dst.Unmap()}
	}
	return nil
}

// Control is a net.Dialer / net.ListenConfig Control function: it binds
// the socket to the interface and, for an address to connect to, refuses
// (with a *NoRouteError) a destination without a route through it. A nil
// binding does nothing.
func (b *Binding) Control(network, address string, c syscall.RawConn) error {
	if b == nil {
		return nil
	}
	var err error
	cerr := c.Control(func(fd uintptr) {
		if err = Bind(int(fd), b.name); err != nil {
			return
		}
		ap, perr := netip.ParseAddrPort(address)
		if perr != nil || ap.Addr().IsUnspecified() || !strings.HasPrefix(network, "tcp") && !strings.HasPrefix(network, "udp") {
			return // a listening or unnamed socket: the binding is all
		}
		var idx int
		if idx, err = indexOn(int(fd), b.name); err != nil {
			return
		}
		err = b.route(idx, ap.Addr())
	})
	if cerr != nil {
		return fmt.Errorf("bind to interface %q: %w", b.name, cerr)
	}
	return err
}
