// Command svscan runs exposure's service detection on given ports of given
// addresses and prints one JSON object per port: the harness bench/sv-vs-nmap.sh
// uses until `exposure scan --sV` does the same from the CLI.
//
//	svscan -p 22,80,443 [-e explab0] 198.18.0.2
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/exposure-monitor/exposure/scanner/service"
	"github.com/exposure-monitor/exposure/snapshot"
)

// result is one line of output.
type result struct {
	Address string            `json:"address"`
	Port    uint16            `json:"port"`
	Seconds float64           `json:"seconds"`
	Service *snapshot.Service `json:"service,omitempty"`
	Error   string            `json:"error,omitempty"`
}

func main() {
	ports := flag.String("p", "", "comma-separated TCP ports")
	intensity := flag.Int("intensity", service.DefaultIntensity, "version intensity 0-9")
	timeout := flag.Duration("timeout", service.DefaultTimeout, "per-port timeout")
	probeFiles := flag.String("probe-files", "", "comma-separated extra probe files")
	iface := flag.String("e", "", "bind every connection to this network interface (nmap's -e)")
	flag.Parse()
	if err := run(os.Stdout, *ports, *intensity, *timeout, *probeFiles, *iface, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "svscan:", err)
		os.Exit(1)
	}
}

func run(stdout io.Writer, portList string, intensity int, timeout time.Duration, probeFiles, iface string, args []string) error {
	if portList == "" || len(args) == 0 {
		return errors.New("usage: svscan -p PORTS ADDRESS [ADDRESS]")
	}
	var ports []uint16
	for _, s := range strings.Split(portList, ",") {
		v, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return fmt.Errorf("port %q: %w", s, err)
		}
		ports = append(ports, uint16(v))
	}
	var addrs []netip.Addr
	for _, a := range args {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			return fmt.Errorf("address: %w", err)
		}
		addrs = append(addrs, addr)
	}
	o := service.Options{Intensity: intensity, Timeout: timeout, Interface: iface,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if probeFiles != "" {
		o.ProbeFiles = strings.Split(probeFiles, ",")
	}
	d, err := service.New(o)
	if err != nil {
		return err
	}
	start := time.Now()
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		enc = json.NewEncoder(stdout)
		sem = make(chan struct{}, service.DefaultConcurrency)
	)
	for _, a := range addrs {
		for _, p := range ports {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				t0 := time.Now()
				s, err := d.Detect(context.Background(), a, p)
				r := result{Address: a.String(), Port: p, Seconds: time.Since(t0).Seconds(), Service: s}
				if err != nil {
					r.Error = err.Error()
				}
				mu.Lock()
				defer mu.Unlock()
				_ = enc.Encode(r)
			}()
		}
	}
	wg.Wait()
	fmt.Fprintf(os.Stderr, "svscan: %d ports in %.3fs\n", len(addrs)*len(ports), time.Since(start).Seconds())
	return nil
}
