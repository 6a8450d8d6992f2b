// Command labctl brings a lab of network-namespace hosts up for the bench/
// scripts that compare exposure with nmap, prints what is where, and tears
// it down on SIGINT or SIGTERM.
//
//	go run ./internal/lab/labctl up --hosts 254 --open-ports rand:3 --out lab.json
//	go run ./internal/lab/labctl scale --bits 16 --out scale.json --truth truth.txt
//
// The JSON (one line on stdout, and in --out if given) lists every host with
// its addresses and the exact TCP ports open on it. The scale lab (one
// namespace answering for a whole prefix, see lab.ScaleLab) is described by
// its prefix, interface and gateway instead; --truth writes its open
// (address, port) pairs, one "ADDR PORT" a line.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/exposure-monitor/exposure/internal/lab"
)

type options struct {
	hosts     int
	daemons   bool
	services  bool
	windows   bool
	fourth    bool
	fifth     bool
	allGroups bool
	udp       bool
	loss      float64
	openPorts string
	seed      uint64
	out       string
	banner    string
	duration  time.Duration
}

func (o options) validate() error {
	if o.hosts < 1 || o.hosts > 509 {
		return fmt.Errorf("--hosts %d: want 1..509", o.hosts)
	}
	if o.allGroups && o.hosts < len(lab.DaemonGroups()) {
		return fmt.Errorf("--all-groups needs --hosts >= %d (one host per group), not %d", len(lab.DaemonGroups()), o.hosts)
	}
	if o.loss < 0 || o.loss >= 1 {
		return fmt.Errorf("--loss %v: want 0 <= P < 1", o.loss)
	}
	return nil
}

// Output is what labctl prints once the lab is up.
type Output struct {
	Bridge       string       `json:"bridge"`
	Prefix       netip.Prefix `json:"prefix"`
	Prefix6      netip.Prefix `json:"prefix6"`
	OpenPorts    string       `json:"open_ports"`
	Seed         uint64       `json:"seed"`
	Loss         float64      `json:"loss"`
	SetupSeconds float64      `json:"setup_seconds"`
	Hosts        []HostOutput `json:"hosts"`
}

// HostOutput is one host: its addresses and the ports that are open on both.
type HostOutput struct {
	Name    string     `json:"name"`
	Addr    netip.Addr `json:"addr"`
	Addr6   netip.Addr `json:"addr6"`
	Open    []uint16   `json:"open"`
	Daemons []string   `json:"daemons,omitempty"`
	// UDPOpen are the UDP ports with a socket that datagrams to Addr
	// reach (ss -lun in the host), with --udp-daemons.
	UDPOpen []uint16 `json:"udp_open,omitempty"`
}

func main() {
	app := kingpin.New("labctl", "Bring up an exposure test lab (needs root).")
	var o options
	up := app.Command("up", "Create the lab, print it as JSON, wait for SIGINT/SIGTERM, tear it down.")
	up.Flag("hosts", "Number of hosts.").Default("1").IntVar(&o.hosts)
	up.Flag("daemons", "Start the real daemons (sshd, nginx, postgresql, ...) on the first host.").BoolVar(&o.daemons)
	up.Flag("service-daemons", "Start the second daemon group (ngircd, haproxy, varnish, tomcat, ...) on the first host, instead of --daemons.").BoolVar(&o.services)
	up.Flag("windows-daemons", "Start the third daemon group (smbd, xrdp, slapd, krb5kdc, rpcbind, cupsd, ngircd over TLS) on the first host, instead of --daemons.").BoolVar(&o.windows)
	up.Flag("fourth-daemons", "Start the fourth daemon group (telnetd under inetd, prosody, openvpn over TCP, zookeeper, influxdb) on the first host, instead of --daemons.").BoolVar(&o.fourth)
	up.Flag("fifth-daemons", "Start the fifth daemon group (vsftpd, postfix, from their unpacked packages) on the first host, instead of --daemons.").BoolVar(&o.fifth)
	up.Flag("all-groups", "Start every TCP daemon group, each on a host of its own (hosts 1 to 5 in the order daemons, services, windows, fourth, fifth).").BoolVar(&o.allGroups)
	up.Flag("udp-daemons", "Start the UDP daemons (lab.UDPDaemons: named, snmpd, tftpd, memcached -U, ntpsec, freeradius, openvpn, rpcbind, nmbd, krb5kdc, charon, coturn) on the first host, instead of --daemons.").BoolVar(&o.udp)
	up.Flag("loss", "Drop this fraction of incoming packets on every host (iptables statistic).").Default("0").Float64Var(&o.loss)
	up.Flag("open-ports", `Ports every host listens on: a list like "22,80" plus "rand:N" for N ports per host chosen from nmap's top 100 by --seed.`).Default("rand:3").StringVar(&o.openPorts)
	up.Flag("seed", "Seed of the per-host port choice.").Default("1").Uint64Var(&o.seed)
	up.Flag("banner", "Line the plain listeners send before closing (default: none).").StringVar(&o.banner)
	up.Flag("out", "Also write the JSON to this file (written once the lab is up).").StringVar(&o.out)
	up.Flag("for", "Tear down after this long instead of waiting for a signal (0 = wait).").Default("0").DurationVar(&o.duration)
	var so scaleOptions
	scale := app.Command("scale", "Create a scale lab (one namespace answering for a whole prefix), print it as JSON, wait, tear it down.")
	scale.Flag("bits", "Prefix length of the lab: 16 (65,536 addresses) to 23.").Default("16").IntVar(&so.bits)
	scale.Flag("out", "Also write the JSON to this file (written once the lab is up).").StringVar(&so.out)
	scale.Flag("truth", "Write the open (address, port) pairs to this file, one \"ADDR PORT\" a line.").StringVar(&so.truth)
	scale.Flag("for", "Tear down after this long instead of waiting for a signal (0 = wait).").Default("0").DurationVar(&so.duration)
	cmd, err := app.Parse(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "labctl: %v\n", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	switch cmd {
	case up.FullCommand():
		if err := o.validate(); err != nil {
			fmt.Fprintf(os.Stderr, "labctl: %v\n", err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := run(ctx, o, os.Stdout, logger); err != nil {
			logger.Error("labctl failed", "err", err)
			os.Exit(1)
		}
	case scale.FullCommand():
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := runScale(ctx, so, os.Stdout, logger); err != nil {
			logger.Error("labctl failed", "err", err)
			os.Exit(1)
		}
	}
}

// daemonsFor returns the daemons host i runs, nil for none.
func (o options) daemonsFor(i int) []lab.Daemon {
	groups := lab.DaemonGroups()
	switch {
	case o.allGroups && i < len(groups):
		return groups[i].Daemons
	case i != 0 || o.allGroups:
		return nil
	case o.services:
		return lab.ServiceDaemons()
	case o.windows:
		return lab.WindowsDaemons()
	case o.fourth:
		return lab.FourthDaemons()
	case o.fifth:
		return lab.FifthDaemons()
	case o.udp:
		return lab.UDPDaemons()
	case o.daemons:
		return lab.Daemons()
	}
	return nil
}

// run brings the lab up, reports it on stdout and keeps it until ctx ends.
func run(ctx context.Context, o options, stdout io.Writer, logger *slog.Logger) (err error) {
	plan, err := lab.ParsePortPlan(o.openPorts)
	if err != nil {
		return err
	}
	start := time.Now()
	setupCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	l, err := lab.Open(setupCtx, lab.Options{Logger: logger})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("tear down lab: %w", cerr))
		}
	}()
	hosts, err := l.NewHosts(setupCtx, o.hosts)
	if err != nil {
		return err
	}
	out := Output{Bridge: l.Bridge(), Prefix: l.Prefix(), Prefix6: l.Prefix6(), OpenPorts: plan.String(), Seed: o.seed, Loss: o.loss}
	for i, h := range hosts {
		ho := HostOutput{Name: h.Name(), Addr: h.Addr(), Addr6: h.Addr6()}
		var taken []uint16
		if ds := o.daemonsFor(i); ds != nil {
			if err := h.StartDaemons(setupCtx, ds); err != nil {
				return err
			}
			for _, d := range ds {
				ho.Daemons = append(ho.Daemons, d.Name)
			}
			taken = lab.DaemonPorts(ds)
			if o.udp {
				bound, err := h.ListeningUDPOn(setupCtx, h.Addr())
				if err != nil {
					return err
				}
				for p := range bound {
					ho.UDPOpen = append(ho.UDPOpen, p)
				}
				slices.Sort(ho.UDPOpen)
			}
		}
		for _, p := range plan.Ports(o.seed, i) {
			if slices.Contains(taken, p) {
				continue // a daemon already serves it
			}
			if _, err := h.ListenAddr(netip.AddrPortFrom(netip.IPv6Unspecified(), p), o.banner); err != nil {
				return err
			}
			taken = append(taken, p)
		}
		slices.Sort(taken)
		ho.Open = taken
		if o.loss > 0 {
			if err := h.SetLoss(setupCtx, o.loss); err != nil {
				return err
			}
		}
		out.Hosts = append(out.Hosts, ho)
	}
	if _, err := l.Targets(setupCtx); err != nil {
		return err
	}
	out.SetupSeconds = time.Since(start).Seconds()
	remove, err := publish(out, o.out, stdout)
	if err != nil {
		return err
	}
	defer remove()
	logger.Info("lab ready", "hosts", len(hosts), "setup", time.Since(start).Round(time.Millisecond))
	waitFor(ctx, o.duration)
	logger.Info("tearing down")
	return nil
}

// publish writes out as one JSON line to stdout and, when path is not "",
// to path: written to a temporary name and renamed, so a script polling
// for the file never reads half of it. remove deletes the file.
func publish(out any, path string, stdout io.Writer) (remove func(), err error) {
	remove = func() {}
	b, err := json.Marshal(out)
	if err != nil {
		return remove, err
	}
	b = append(b, '\n')
	if path != "" {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return remove, err
		}
		if err := os.Rename(tmp, path); err != nil {
			return remove, err
		}
		remove = func() { os.Remove(path) }
	}
	if _, err := stdout.Write(b); err != nil {
		return remove, err
	}
	return remove, nil
}

// waitFor returns when ctx ends or, when d > 0, once d has passed.
func waitFor(ctx context.Context, d time.Duration) {
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	<-ctx.Done()
}
