// Package lab builds throw-away networks of Linux network namespaces for the
// tests and benchmarks that need real hosts, real daemons and real packet
// loss. It needs root, iproute2 and iptables.
//
// A lab owns one block of the benchmark range 198.18.0.0/15 (RFC 2544): block
// k is 198.18.0.0 + k*512 as a /23, plus 2001:2:0:k::/64 (RFC 5180). The root
// namespace reaches the block through a bridge named explab<k> that holds the
// block's first address (.1 and ::1). Every host is a namespace named
// explab<k>-<host> joined to the bridge by a veth pair, with the following
// addresses of the block.
//
// Blocks are claimed with a flock on /run/exposure-lab/<k>.lock that is held
// for the life of the lab, so test binaries running in parallel never collide,
// and the kernel releases the claim when a process dies. A block whose lock is
// free but whose bridge or namespaces still exist belongs to a dead process
// and is torn down before it is reused.
//
// Network safety: nothing in this package hands out an address for scanning
// before `ip route get` has shown that the address leads into this lab's
// bridge (or is loopback). Hosts are only returned after that check, so
// (*Host).Addr and (*Host).Addr6 always return checked addresses, and
// (*Lab).Targets checks again.
//
// Hosts are configured over rtnetlink from a thread inside each namespace
// (254 hosts take about a second). Listeners are opened the same way, so a
// test serves ports of many hosts from its own process. Real daemons run
// under `ip netns exec` with configuration and data under the lab's
// directory, in groups whose ports overlap, each for a host of its own
// (DaemonGroups): Daemons, ServiceDaemons, WindowsDaemons, FourthDaemons
// and FifthDaemons (vsftpd and Postfix, from packages unpacked under
// /opt/exposure-lab) over TCP, UDPDaemons over UDP. Daemons whose pid or socket
// path is compiled in under /run get a tmpfs there, in the mount namespace
// ip netns exec gives each command (telnetd's inetd gets a resolv.conf
// there too, so its reverse lookups fail at once). A daemon that listens
// before it serves (ZooKeeper) is up when it answers, not when it accepts. SetLoss and Filter load iptables rules inside the
// namespace (chains EXPLAB-LOSS and EXPLAB-FILTER).
//
// The scale lab (OpenScale, NewScale) is one namespace, explab<k>-scale,
// that answers for a whole prefix of up to a /16 (blocks k.. of the range,
// claimed with the same locks, plus a link block) through a local route,
// `ip route add local PREFIX dev lo`. The root namespace routes the prefix
// via the namespace's end of one veth pair, so the kernel keeps a single
// permanent neighbour entry however many addresses are scanned. Listeners
// on the wildcard address serve 80 on every address and 22 on the even ones
// (an iptables reset closes it on the odd ones), so the truth of any scan
// is computable (ScaleLab.Open). CheckRoute refuses an address unless it
// routes via that gateway into the lab's veth.
//
// Tests use New, AddHost, AddHosts, Listen, Start and StartAll, which fail
// the test on error. Programs (labctl) use Open, NewHost, NewHosts,
// ListenAddr and (*Host).Start, which return errors.
package lab
