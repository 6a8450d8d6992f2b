package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/scanner"
	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/scanner/service"
	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// defaultScanRate is the packet budget of a one-off scan: a ceiling, high
// enough that a sweep of a LAN or loopback is bounded by the kernel's work
// per probe (about 150,000 probes/s on two cores), not by the budget. Lower
// it with --rate for slow links; the daemon has its own global.scan_rate.
const defaultScanRate = "300000"

type scanFlags struct {
	ports      string
	sV         bool
	intensity  int
	rate       int
	retries    int
	engine     string
	format     string
	xmlFile    string
	xmlScripts bool
	sequential bool
	noDNS      bool
	iface      string
	targets    []string
}

func scanCommand(app *kingpin.Application) (string, runFunc) {
	f := &scanFlags{}
	cmd := app.Command("scan", "Scan targets once and print the result (nmap-like table or a JSON snapshot).")
	cmd.Flag("ports", `Ports: "22,80", "1-1024", "-" for all, "top:1000" (default), "top:100,8080-8090"; UDP as nmap writes it: "T:22,U:53,161", "udp-top:100".`).Short('p').Default(config.DefaultPorts).StringVar(&f.ports)
	cmd.Flag("sV", "Detect services and versions on the open ports (nmap's -sV).").BoolVar(&f.sV)
	cmd.Flag("version-intensity", "Service detection intensity, 0 (light) to 9 (all probes).").Default(strconv.Itoa(service.DefaultIntensity)).IntVar(&f.intensity)
	cmd.Flag("rate", "Packets (or connection attempts) per second; 0 for no limit.").Default(defaultScanRate).IntVar(&f.rate)
	cmd.Flag("retries", "Retransmissions of an unanswered probe.").Default(strconv.Itoa(config.DefaultRetries)).IntVar(&f.retries)
	cmd.Flag("engine", "Scan engine: syn (raw sockets, needs CAP_NET_RAW), connect, or auto.").Default(config.DefaultEngine).EnumVar(&f.engine, scanner.EngineKinds()...)
	cmd.Flag("format", "Output format: text, json (the snapshot document) or xml (nmap's XML output, nmap.dtd).").Default("text").EnumVar(&f.format, "text", "json", "xml")
	cmd.Flag("output.xml", "Also write nmap XML to FILE (nmap's -oX FILE).").PlaceHolder("FILE").StringVar(&f.xmlFile)
	cmd.Flag("xml.scripts", "In nmap XML, add the certificate (an ssl-cert script) and inconclusive detections (an exposure-detection script); Debian's ndiff 7.93 crashes on script differences.").BoolVar(&f.xmlScripts)
	cmd.Flag("sequential", "Probe in address and port order instead of a random order.").BoolVar(&f.sequential)
	cmd.Flag("no-dns", "Do not look up reverse DNS names.").Short('n').BoolVar(&f.noDNS)
	cmd.Flag("interface", "Bind every socket of the scan to this network interface (nmap's -e): probes, -sV connections and DNS go out only through it, and a target it does not route to is reported filtered, not probed.").Short('e').PlaceHolder("NAME").StringVar(&f.iface)
	cmd.Arg("target", "Addresses, CIDR prefixes, ranges (198.18.0.1-20) or hostnames.").Required().StringsVar(&f.targets)
	return cmd.FullCommand(), f.run
}

func (f *scanFlags) run(ctx context.Context, e *env) error {
	pspec, err := spec.ParsePortSpec(f.ports)
	ports := pspec.TCP
	if err != nil {
		return usagef("bad port spec (-p): %w", err)
	}
	targets, err := spec.ParseTargets(f.targets, nil)
	if err != nil {
		return usagef("bad target: %w", err)
	}
	if f.rate < 0 {
		return usagef("bad --rate %d: must be 0 (no limit) or positive", f.rate)
	}
	if f.retries < 0 || f.retries > 10 {
		return usagef("bad --retries %d: must be between 0 and 10", f.retries)
	}
	if f.intensity < 0 || f.intensity > 9 {
		return usagef("bad --version-intensity %d: must be between 0 and 9", f.intensity)
	}
	// One binding for every socket of the scan: probes, -sV and DNS. A
	// one-off scan binds to an interface that exists now.
	bind, err := netif.Open(f.iface)
	if err != nil {
		return usagef("bad --interface (-e): %w", err)
	}
	var detector *service.Detector
	if f.sV {
		if detector, err = service.New(service.Options{Intensity: f.intensity, Logger: e.logger, Bind: bind}); err != nil {
			return fmt.Errorf("service detection: %w", err)
		}
	}
	limiter := rate.NewLimiter(rate.Inf, 0)
	if f.rate > 0 {
		limiter = rate.NewLimiter(rate.Limit(f.rate), max(1, f.rate/100))
	}
	bar := newProgressBar(e.stderr)
	var engines scanner.Engines
	engineName := scanner.KindUDP
	if ports.Len() > 0 {
		engine, eerr := scanner.NewEngine(f.engine, scanner.EngineOptions{Limiter: limiter, Logger: e.logger, Bind: bind})
		if errors.Is(eerr, scanner.ErrRawPermission) {
			return fmt.Errorf("scan engine: %w; --engine connect needs neither", eerr)
		}
		if eerr != nil {
			return fmt.Errorf("scan engine: %w", eerr)
		}
		engines.TCP, engineName = engine, engine.Name()
	}
	if pspec.UDP.Len() > 0 {
		if f.engine == scanner.KindConnect {
			return usagef("bad port spec (-p): UDP ports (%s) need raw sockets; --engine connect scans TCP only", pspec.UDP)
		}
		u, uerr := scanner.NewUDP(scanner.UDPOptions{Limiter: limiter, Logger: e.logger, Bind: bind})
		if uerr != nil {
			return fmt.Errorf("scan engine: %w", uerr)
		}
		engines.UDP = u
	}
	opts := scanner.SweepOptions{
		Target:     strings.Join(f.targets, " "),
		Retries:    f.retries,
		Sequential: f.sequential,
		ReverseDNS: !f.noDNS,
		Bind:       bind,
		Progress:   bar.update,
	}
	// A TCP scan that is only printed keeps its results compact and
	// streams them out (scanner.Results, snapshot.WriteJSON): a /16 never
	// exists as a whole snapshot or document. -sV, UDP and nmap XML work on
	// a snapshot.
	var (
		compact *scanner.Results
		snap    *snapshot.Snapshot
	)
	if engines.TCP != nil && pspec.UDP.Len() == 0 && detector == nil && f.xmlFile == "" && f.format != "xml" {
		opts.Ports, opts.Protocol = ports, spec.ProtoTCP
		compact, err = scanner.SweepResults(ctx, engines.TCP, targets, opts)
		if compact != nil {
			snap = compact.Header()
		}
	} else {
		snap, err = scanner.SweepSpec(ctx, engines, targets, pspec, opts)
	}
	if snap == nil {
		return fmt.Errorf("scan: %w", err)
	}
	if err != nil {
		e.logger.Error("scan failed part way; the result is incomplete", "err", err)
	}
	bar.finish()
	if detector != nil && ctx.Err() == nil {
		detector.Annotate(ctx, snap)
		detector.AnnotateUDP(ctx, snap)
	}
	if !snap.Complete {
		e.logger.Warn("scan was cut short: the result is incomplete")
	}
	xo := xmlOptions(e.args, engineName, portList(ports))
	if pspec.UDP.Len() > 0 {
		xo.UDPPorts = portList(pspec.UDP)
	}
	xo.Scripts = f.xmlScripts
	if f.xmlFile != "" {
		if werr := writeXMLFile(f.xmlFile, snap, xo); werr != nil {
			return werr
		}
	}
	hosts := snapshotHosts(snap)
	if compact != nil {
		hosts = scanHosts{all: compact.Hosts(), up: compact.HostsUp(), open: compact.OpenPorts()}
	}
	switch f.format {
	case "xml":
		if werr := writeXML(e.stdout, snap, xo); werr != nil {
			return werr
		}
	case "json":
		if werr := snapshot.WriteJSON(e.stdout, snap, hosts.all, "  "); werr != nil {
			return werr
		}
	default:
		if werr := writeScanText(e.stdout, snap, hosts, f.sV); werr != nil {
			return fmt.Errorf("write report: %w", werr)
		}
	}
	if err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("scan: %w", ctx.Err())
	}
	return nil
}

// scanHosts are the hosts of a scan to print, from a snapshot or streamed
// from compact results, with their counts.
type scanHosts struct {
	all      iter.Seq[*snapshot.Host]
	up, open int
}

func snapshotHosts(s *snapshot.Snapshot) scanHosts {
	return scanHosts{all: s.All(), up: s.HostsUp(), open: s.OpenPorts()}
}

// writeScanText prints an nmap-like report of s (whose own Hosts are not
// used) and hosts: each host's line "Not shown" counts its unlisted ports
// per protocol and state (snapshot.Host.Unlisted).
func writeScanText(w io.Writer, s *snapshot.Snapshot, hosts scanHosts, versions bool) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	ew := &errWriter{w: bw}
	for h := range hosts.all {
		name := h.Address
		if h.Hostname != "" {
			name = fmt.Sprintf("%s (%s)", h.Hostname, h.Address)
		}
		fmt.Fprintf(ew, "Exposure scan report for %s\n", name)
		if h.State != snapshot.HostUp {
			fmt.Fprintf(ew, "Host seems down.\n\n")
		} else {
			fmt.Fprintf(ew, "Host is up.\n")
		}
		if ns := notShown(h.Unlisted); ns != "" && h.State == snapshot.HostUp {
			fmt.Fprintf(ew, "Not shown: %s\n", ns)
		}
		if len(h.Ports) > 0 {
			tw := tabwriter.NewWriter(ew, 0, 0, 1, ' ', 0)
			cols := "PORT\tSTATE\tSERVICE"
			if versions {
				cols += "\tVERSION"
			}
			fmt.Fprintln(tw, cols)
			for _, p := range h.Ports {
				svc, ver := scanner.PortName(p.Port), ""
				if p.Service != nil {
					named := *p.Service
					named.Name = cmp.Or(named.Name, svc) // the port's usual service
					svc = named.FullName()
					ver = strings.TrimSpace(strings.Join(nonEmpty(p.Service.Product, p.Service.Version), " "))
					if p.Service.Info != "" {
						ver = strings.TrimSpace(ver + " (" + p.Service.Info + ")")
					}
				}
				line := fmt.Sprintf("%d/%s\t%s\t%s", p.Port, p.Protocol, p.State, svc)
				if versions {
					line += "\t" + ver
				}
				fmt.Fprintln(tw, line)
			}
			_ = tw.Flush()
		}
		fmt.Fprintln(ew)
	}
	state := ""
	if !s.Complete {
		state = " (INCOMPLETE: the scan was cut short)"
	}
	fmt.Fprintf(ew, "Exposure done: %s up, %s; %s, %s, %s in %.2f seconds%s\n",
		counted(hosts.up, "host", "hosts"), counted(hosts.open, "open port", "open ports"),
		counted(s.Quality.ProbesSent, "probe", "probes"), counted(s.Quality.Retransmits, "retransmit", "retransmits"),
		counted(s.Quality.Replies, "reply", "replies"), s.FinishedAt.Sub(s.StartedAt).Seconds(), state)
	if ew.err != nil {
		return ew.err
	}
	return bw.Flush()
}

// notShown says how many ports of each protocol and state a host's
// report leaves out, nmap style: "997 closed tcp ports, 5 open|filtered
// udp ports".
func notShown(u snapshot.Unlisted) string {
	var parts []string
	for _, proto := range []string{spec.ProtoTCP, spec.ProtoUDP} {
		for _, st := range snapshot.UnlistedStates(proto) {
			if n := u.Count(proto, st); n > 0 {
				parts = append(parts, counted(n, st+" "+proto+" port", st+" "+proto+" ports"))
			}
		}
	}
	return strings.Join(parts, ", ")
}

func nonEmpty(s ...string) []string {
	var out []string
	for _, x := range s {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

// errWriter keeps the first write error so the report code stays linear.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// progressBar draws on stderr when it is a terminal and does nothing
// otherwise, so redirected output stays clean.
type progressBar struct {
	mu   sync.Mutex
	w    io.Writer
	on   bool
	last time.Time
	drew bool
}

func newProgressBar(w io.Writer) *progressBar {
	b := &progressBar{w: w}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		b.on = err == nil
	}
	return b
}

func (b *progressBar) update(done, total uint64) {
	if !b.on || total == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if now.Sub(b.last) < 100*time.Millisecond && done < total {
		return
	}
	b.last = now
	const width = 40
	fill := int(done * width / total)
	fmt.Fprintf(b.w, "\r[%s%s] %3d%% %d/%d", strings.Repeat("#", fill), strings.Repeat(" ", width-fill), done*100/total, done, total)
	b.drew = true
}

func (b *progressBar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.drew {
		fmt.Fprintf(b.w, "\r%s\r", strings.Repeat(" ", 80))
	}
}
