package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/prometheus/common/version"

	"github.com/exposure-monitor/exposure/nmapxml"
	"github.com/exposure-monitor/exposure/scanner"
	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// xmlOptions are the nmap XML options of a command run with args.
func xmlOptions(args []string, engine string, ports []uint16) nmapxml.WriteOptions {
	versionText() // settles version.Version
	typ := "syn"
	if engine == "connect" {
		typ = "connect"
	}
	return nmapxml.WriteOptions{Args: "exposure " + strings.Join(args, " "), Version: version.Version,
		ScanType: typ, Ports: ports, PortName: scanner.PortName}
}

// writeXMLFile writes s as nmap XML to path (nmap's -oX FILE).
func writeXMLFile(path string, s *snapshot.Snapshot, o nmapxml.WriteOptions) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write nmap XML: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write nmap XML %s: %w", path, cerr)
		}
	}()
	return writeXML(f, s, o)
}

func writeXML(w io.Writer, s *snapshot.Snapshot, o nmapxml.WriteOptions) error {
	if err := nmapxml.Write(w, s, o); err != nil {
		return fmt.Errorf("write nmap XML: %w", err)
	}
	return nil
}

// portList is every port of p, in order.
func portList(p spec.Ports) []uint16 {
	out := make([]uint16, p.Len())
	for i := range out {
		out[i] = p.At(i)
	}
	return out
}
