package scanner

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/scanner/spec"
)

// The send floor: what the lab's kernel path alone costs per probe. Every
// SYN of a workload is sent as fast as the kernel takes it, from one TX ring
// per CPU on the lab's bridge (the engine's cheapest path, ring.go), and
// nothing is received, tracked or retransmitted. On a lab, the targets' TCP stacks
// answer (RST) inside the sender's system call, on the same CPUs, and the
// host drops the replies there too, so this is the least wall time any SYN
// scanner can take for the workload on this machine. bench/syn-vs-nmap.sh
// compares it with nmap's time: a ratio target below floor/nmap cannot be
// met here, however little the scanner itself costs.

// systemCPU is the busy CPU time of the whole machine (all CPUs, user,
// system, interrupts and softirqs), from /proc/stat.
func systemCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, errors.New("/proc/stat: no cpu line")
	}
	var ticks uint64
	for i, s := range f[1:] {
		if i == 3 || i == 4 || i >= 7 { // idle, iowait; steal and guests are not ours
			continue
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += v
	}
	// USER_HZ is 100 on every Linux architecture Go supports.
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// floorSender sends the SYNs of pairs from one TX ring per worker, the
// engine's cheapest path (ring.go), as Ethernet frames to the hosts' known
// link-layer addresses.
type floorSender struct {
	rings []*txRing
	link  ringLink
	srcs  map[netip.Addr]netip.Addr
	macs  map[netip.Addr]net.HardwareAddr
}

func newFloorSender(b *testing.B, iface string, workers int, addrs []netip.Addr) *floorSender {
	b.Helper()
	bind, err := netif.New(iface)
	if err != nil {
		b.Fatal(err)
	}
	link, ok := ethernetLink(bind)
	if !ok {
		b.Fatalf("%s is not an Ethernet interface", iface)
	}
	macs, err := netif.Neighbours(link.index)
	if err != nil {
		b.Fatal(err)
	}
	fs := &floorSender{link: link, srcs: map[netip.Addr]netip.Addr{}, macs: macs}
	for _, a := range addrs {
		if err := bind.Route(a); err != nil {
			b.Fatalf("%v: %v", a, err)
		}
		if fs.srcs[a], err = routeSource(a, bind); err != nil {
			b.Fatal(err)
		}
		if _, ok := macs[a]; !ok {
			b.Fatalf("%v: no neighbour entry on %s (the lab installs permanent ones)", a, iface)
		}
	}
	for range workers {
		r, err := openTxRing(link)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(r.close)
		fs.rings = append(fs.rings, r)
	}
	return fs
}

// sweep sends one SYN per pair, in batches handed to the workers.
func (fs *floorSender) sweep(b *testing.B, pairs spec.Pairs, sport uint16) uint64 {
	jobs := make(chan [][]byte, len(fs.rings))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, r := range fs.rings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pkts := range jobs {
				for len(pkts) > 0 {
					n, err := r.send(pkts)
					pkts = pkts[n:]
					if errors.Is(err, syscall.ENOBUFS) {
						time.Sleep(time.Millisecond)
						continue
					}
					if err != nil {
						mu.Lock()
						firstErr = err
						mu.Unlock()
						return
					}
				}
			}
		}()
	}
	builder := newPacketBuilder()
	var sent uint64
	for {
		arena := make([]byte, 0, maxSendBatch*(ethHeaderLen+ipv4HeaderLen+24))
		var ends []int
		for len(ends) < maxSendBatch {
			a, port, ok := pairs.Next()
			if !ok {
				break
			}
			arena = appendEthernet(arena, fs.macs[a], fs.link.mac)
			var err error
			if arena, err = builder.syn4(arena, fs.srcs[a], a, sport, port, uint32(sent)); err != nil {
				b.Fatal(err)
			}
			ends = append(ends, len(arena))
			sent++
		}
		if len(ends) == 0 {
			break
		}
		var pkts [][]byte
		off := 0
		for _, end := range ends {
			pkts = append(pkts, arena[off:end:end])
			off = end
		}
		jobs <- pkts
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return sent
}

func benchLabSendFloor(b *testing.B, hosts int, portSpec string) {
	if os.Geteuid() != 0 {
		b.Skip("needs CAP_NET_RAW and a lab (run as root)")
	}
	strs, iface := benchLab(b, hosts, 0)
	var addrs []netip.Addr
	for _, s := range strs {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	ports, err := spec.ParsePorts(portSpec)
	if err != nil {
		b.Fatal(err)
	}
	workers := max(1, min(runtime.GOMAXPROCS(0), maxSenders))
	fs := newFloorSender(b, iface, workers, addrs)
	set := spec.AddrSetOf(addrs...)
	// Warm the neighbour cache the way a scan's first probes do.
	fs.sweep(b, spec.NewOrder(set, spec.PortsOf(9), spec.OrderOptions{}), 40001)
	cpu0, err := systemCPU()
	if err != nil {
		b.Fatal(err)
	}
	var probes uint64
	b.ResetTimer()
	for b.Loop() {
		probes += fs.sweep(b, spec.NewOrder(set, ports, spec.OrderOptions{}), 40001)
	}
	reportProbes(b, probes, cpu0)
}

// The send floors of the lab workloads of bench/syn-vs-nmap.sh.
func BenchmarkLabSendFloorAllPorts(b *testing.B)        { benchLabSendFloor(b, 1, "-") }
func BenchmarkLabSendFloor254HostsTop1000(b *testing.B) { benchLabSendFloor(b, 254, "top:1000") }
