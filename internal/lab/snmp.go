package lab

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// TCPInSegs returns the number of TCP segments the host's stack has
// received (Tcp InSegs of its /proc/net/snmp): a probe that reached the host
// shows up here, so tests can prove that none did.
func (h *Host) TCPInSegs(ctx context.Context) (uint64, error) {
	out, err := h.Exec(ctx, "cat", "/proc/net/snmp")
	if err != nil {
		return 0, fmt.Errorf("read %s's /proc/net/snmp: %w", h.Name(), err)
	}
	return parseTCPInSegs(string(out))
}

// TCPSegmentsIn is TCPInSegs for tests: it fails the test on error.
func (h *Host) TCPSegmentsIn() uint64 {
	n, err := h.TCPInSegs(context.Background())
	h.lab.must(err)
	return n
}

// parseTCPInSegs reads InSegs from the Tcp: header and value lines of
// /proc/net/snmp.
func parseTCPInSegs(snmp string) (uint64, error) {
	var names []string
	for _, line := range strings.Split(snmp, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "InSegs" && i < len(f) {
				return strconv.ParseUint(f[i], 10, 64)
			}
		}
		break
	}
	return 0, fmt.Errorf("no Tcp InSegs in /proc/net/snmp")
}
