package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// UDPDaemons returns the real daemons that answer on UDP: a name server, an
// SNMP agent, a TFTP server, memcached with its UDP port on, an NTP server
// (ntpsec), a RADIUS server (freeradius), OpenVPN, the RPC portmapper, a
// NetBIOS name server (nmbd), a Kerberos KDC, an IKE daemon (charon) and a
// STUN server (coturn). Services names them the way nmap -sU -sV does.
// They run on a host of their own.
func UDPDaemons() []Daemon {
	return []Daemon{
		{Name: "named", Ports: []uint16{53}, UDPPorts: []uint16{53}, Services: map[uint16]string{53: "domain"}, Binaries: []string{"named"}, prepare: prepareNamed},
		{Name: "snmpd", UDPPorts: []uint16{161}, Services: map[uint16]string{161: "snmp"}, Binaries: []string{"snmpd"}, prepare: prepareSnmpd},
		{Name: "tftpd", UDPPorts: []uint16{69}, Services: map[uint16]string{69: "tftp"}, Binaries: []string{"in.tftpd"}, prepare: prepareTftpd},
		{Name: "memcached-udp", Ports: []uint16{11211}, UDPPorts: []uint16{11211}, Services: map[uint16]string{11211: "memcache"}, Binaries: []string{"memcached"}, prepare: prepareMemcachedUDP},
		{Name: "ntpsec", UDPPorts: []uint16{123}, Services: map[uint16]string{123: "ntp"}, Binaries: []string{"ntpd"}, prepare: prepareNtpsec},
		{Name: "freeradius", UDPPorts: []uint16{1812}, Services: map[uint16]string{1812: "radius"}, Binaries: []string{"freeradius"}, prepare: prepareFreeradius},
		{Name: "openvpn", UDPPorts: []uint16{1194}, Services: map[uint16]string{1194: "openvpn"}, Binaries: []string{"openvpn"}, prepare: prepareOpenVPN},
		{Name: "rpcbind", Ports: []uint16{111}, UDPPorts: []uint16{111}, Services: map[uint16]string{111: "rpcbind"}, Binaries: []string{"rpcbind"}, prepare: prepareRpcbind},
		{Name: "nmbd", UDPPorts: []uint16{137}, Services: map[uint16]string{137: "netbios-ns"}, Binaries: []string{"nmbd"}, prepare: prepareNmbd},
		{Name: "krb5kdc", Ports: []uint16{88}, UDPPorts: []uint16{88}, Services: map[uint16]string{88: "kerberos-sec"}, Binaries: []string{"krb5kdc", "kdb5_util"}, prepare: prepareKDC},
		{Name: "charon", UDPPorts: []uint16{500, 4500}, Services: map[uint16]string{500: "isakmp"}, Binaries: []string{charon}, prepare: prepareCharon},
		{Name: "coturn", UDPPorts: []uint16{3478}, Services: map[uint16]string{3478: "stun"}, Binaries: []string{"turnserver"}, prepare: prepareCoturn},
	}
}

// StartUDP starts every daemon of UDPDaemons() on h for a test: it skips
// (or fails under EXPOSURE_LAB=required) when one is not installed.
func StartUDP(t testing.TB, h *Host) []Daemon {
	t.Helper()
	ds := UDPDaemons()
	for _, d := range ds {
		RequireDaemon(t, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := h.StartDaemons(ctx, ds); err != nil {
		t.Fatalf("start udp daemons: %v", err)
	}
	return ds
}

func prepareSnmpd(_ context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	conf, err := c.write("snmpd.conf", "rocommunity public default\nrocommunity6 public default\nsysLocation exposure lab\nsysContact lab@lab.example\n")
	if err != nil {
		return nil, err
	}
	return []string{"snmpd", "-f", "-Lo", "-C", "-c", conf, "-p", c.path("snmpd.pid"),
		"--persistentDir=" + c.dir, "udp:" + h.addr.String() + ":161", "udp6:[" + h.addr6.String() + "]:161"}, nil
}

func prepareTftpd(_ context.Context, c *daemonContext) ([]string, error) {
	root := c.path("tftp")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	return []string{"in.tftpd", "-L", "-u", "nobody", "-a", c.host.addr.String() + ":69", "-s", root}, nil
}

func prepareMemcachedUDP(_ context.Context, c *daemonContext) ([]string, error) {
	h := c.host
	return []string{"memcached", "-u", "nobody", "-l", h.addr.String(), "-l", "[" + h.addr6.String() + "]",
		"-p", "11211", "-U", "11211", "-m", "16", "-P", c.path("memcached.pid")}, nil
}

// ListeningUDP returns the UDP ports with a socket bound in h's namespace
// (ss -lun): the truth a UDP scan is checked against.
func (h *Host) ListeningUDP(ctx context.Context) (map[uint16]bool, error) {
	return h.listeningUDP(ctx, netip.Addr{})
}

// ListeningUDPOn returns the UDP ports with a socket bound in h's
// namespace that datagrams to addr reach: bound to addr, or to the
// wildcard of its family (or "*", both).
func (h *Host) ListeningUDPOn(ctx context.Context, addr netip.Addr) (map[uint16]bool, error) {
	return h.listeningUDP(ctx, addr)
}

func (h *Host) listeningUDP(ctx context.Context, addr netip.Addr) (map[uint16]bool, error) {
	// -e for "v6only:1": a socket on [::] that IPv4 datagrams do not reach.
	out, err := h.Exec(ctx, "ss", "-Hlune")
	if err != nil {
		return nil, fmt.Errorf("ss -lune on %s: %w", h.Name(), err)
	}
	ports := map[uint16]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		i := strings.LastIndexByte(f[3], ':')
		local := strings.Trim(f[3][:i], "[]")
		if local == "::" && addr.Is4() && strings.Contains(line, " v6only:1") {
			continue
		}
		if j := strings.IndexByte(local, '%'); j >= 0 {
			if addr.IsValid() && local[j+1:] == "lo" {
				continue // "0.0.0.0%lo": bound to the loopback device
			}
			local = local[:j]
		}
		if addr.IsValid() && !reaches(local, addr) {
			continue
		}
		var p uint16
		if _, err := fmt.Sscan(f[3][i+1:], &p); err == nil && p != 0 {
			ports[p] = true
		}
	}
	return ports, nil
}

// reaches says whether a socket bound to local (as ss prints it) gets
// datagrams sent to addr.
func reaches(local string, addr netip.Addr) bool {
	switch local {
	case "*":
		return true
	case "0.0.0.0":
		return addr.Is4()
	case "::":
		return true // dual stack (a v6only socket is skipped before)
	}
	a, err := netip.ParseAddr(local)
	return err == nil && a.Unmap() == addr.Unmap()
}

// waitUDPPorts polls ss until every port is bound, the daemon exits, or
// ctx ends.
func (h *Host) waitUDPPorts(ctx context.Context, p *process, ports []uint16) error {
	for {
		if len(ports) == 0 {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("exited before udp port %d was bound: %v", ports[0], p.err)
		}
		bound, err := h.ListeningUDP(ctx)
		if err != nil {
			return err
		}
		for len(ports) > 0 && bound[ports[0]] {
			ports = ports[1:]
		}
		if len(ports) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("udp port %d was not bound: %w", ports[0], ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
