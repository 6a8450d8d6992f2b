package scanner

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/scanner/spec"
)

// benchSweep sweeps targets x ports with engine e b.N times and reports
// probes per second.
func benchSweep(b *testing.B, e Engine, hosts []string, portSpec string) {
	b.Helper()
	targets, err := spec.ParseTargets(hosts, nil)
	if err != nil {
		b.Fatal(err)
	}
	ports, err := spec.ParsePorts(portSpec)
	if err != nil {
		b.Fatal(err)
	}
	var probes uint64
	cpu0, err := systemCPU()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		snap, err := Sweep(context.Background(), e, targets, SweepOptions{Target: "bench", Ports: ports, Retries: 2})
		if err != nil {
			b.Fatal(err)
		}
		if !snap.Complete {
			b.Fatal("incomplete sweep")
		}
		probes += snap.Quality.ProbesSent
	}
	reportProbes(b, probes, cpu0)
}

// reportProbes stops b's timer and reports probes per second and the
// machine's CPU time per probe since cpu0 (systemCPU): machine-wide,
// because on a lab or loopback the targets answer on our CPUs.
func reportProbes(b *testing.B, probes uint64, cpu0 time.Duration) {
	b.Helper()
	b.StopTimer()
	cpu1, err := systemCPU()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(probes)/b.Elapsed().Seconds(), "probes/s")
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(probes), "cpu-µs/probe")
}

// BenchmarkSYNLoopbackAllPorts sweeps all 65,535 ports of 127.0.0.1 with
// no rate limit: the engine's own ceiling.
func BenchmarkSYNLoopbackAllPorts(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("SYN engine needs CAP_NET_RAW (run as root)")
	}
	s, err := NewSYN(SYNOptions{Limiter: rate.NewLimiter(rate.Inf, 0)})
	if err != nil {
		b.Fatal(err)
	}
	benchSweep(b, s, []string{"127.0.0.1"}, "-")
}

// BenchmarkConnectLoopbackTop1000 sweeps nmap's top 1,000 ports of
// 127.0.0.1 with the connect engine.
func BenchmarkConnectLoopbackTop1000(b *testing.B) {
	benchSweep(b, NewConnect(ConnectOptions{}), []string{"127.0.0.1"}, "top:1000")
}

// benchLab builds a lab of n hosts, each listening on 22, 80 and three
// random top-100 ports, with loss applied to every host, and returns their
// addresses and the lab's bridge, which the scans bind to.
//
// With EXPOSURE_BENCH_LAB set to the JSON of a running `labctl up` (and no
// loss asked for), its first n hosts are used instead, unchanged: the
// bench scripts measure on their own labs, and building and tearing down a
// lab of 254 namespaces per run costs the kernel seconds of work that would
// overlap the next measurement.
func benchLab(b *testing.B, n int, loss float64) ([]string, string) {
	b.Helper()
	if path := os.Getenv("EXPOSURE_BENCH_LAB"); path != "" && loss == 0 {
		return labctlHosts(b, path, n)
	}
	l := lab.New(b)
	hosts := l.AddHosts(n)
	plan, err := lab.ParsePortPlan("22,80,rand:3")
	if err != nil {
		b.Fatal(err)
	}
	var addrs []string
	for i, h := range hosts {
		for _, p := range plan.Ports(1, i) {
			h.Listen(p)
		}
		if loss > 0 {
			if err := h.SetLoss(context.Background(), loss); err != nil {
				b.Fatal(err)
			}
		}
		addrs = append(addrs, h.Addr().String())
	}
	return addrs, l.Interface()
}

// labctlHosts reads the first n hosts and the bridge of a labctl JSON. The
// addresses must be lab addresses (198.18.0.0/15); newFloorSender and the
// engine's binding then check that each routes into the bridge.
func labctlHosts(b *testing.B, path string, n int) ([]string, string) {
	b.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var out struct {
		Bridge string `json:"bridge"`
		Hosts  []struct {
			Addr netip.Addr `json:"addr"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		b.Fatalf("%s: %v", path, err)
	}
	if len(out.Hosts) < n || out.Bridge == "" {
		b.Fatalf("%s: want a bridge and %d hosts, have %q and %d", path, n, out.Bridge, len(out.Hosts))
	}
	labNet := netip.MustParsePrefix("198.18.0.0/15")
	var addrs []string
	for _, h := range out.Hosts[:n] {
		if !labNet.Contains(h.Addr) {
			b.Fatalf("%s: %v is not a lab address (%v)", path, h.Addr, labNet)
		}
		addrs = append(addrs, h.Addr.String())
	}
	return addrs, out.Bridge
}

func benchLabSYN(b *testing.B, hosts int, ports string, loss float64) {
	addrs, iface := benchLab(b, hosts, loss)
	s, err := NewSYN(SYNOptions{Limiter: rate.NewLimiter(rate.Inf, 0), Bind: bindTo(b, iface)})
	if err != nil {
		b.Fatal(err)
	}
	benchSweep(b, s, addrs, ports)
}

// The lab workloads of bench/syn-vs-nmap.sh, for `go test -bench Lab`.
func BenchmarkLabSYNAllPorts(b *testing.B)        { benchLabSYN(b, 1, "-", 0) }
func BenchmarkLabSYNAllPortsLoss5(b *testing.B)   { benchLabSYN(b, 1, "-", 0.05) }
func BenchmarkLabSYN254HostsTop1000(b *testing.B) { benchLabSYN(b, 254, "top:1000", 0) }
func BenchmarkLabSYN254HostsTop1000Loss5(b *testing.B) {
	benchLabSYN(b, 254, "top:1000", 0.05)
}
