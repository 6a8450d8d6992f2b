package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/exposure-monitor/exposure/snapshot"
)

// UDPFile is the embedded file of UDP probes, loaded after EmbeddedFile.
const UDPFile = "probes/exposure-udp-probes"

// maxUDPWait bounds the wait for one UDP probe's answer.
const maxUDPWait = 2 * time.Second

// udpDB loads the embedded UDP probes into db.
func udpDB(db *DB) error {
	f, err := embedded.Open(UDPFile)
	if err != nil {
		return fmt.Errorf("open embedded udp probes: %w", err)
	}
	defer f.Close()
	if err := db.Add(UDPFile, f); err != nil {
		return fmt.Errorf("load embedded udp probes: %w", err)
	}
	return nil
}

// DetectUDP sends the UDP probes registered for port (up to the intensity)
// to addr, one at a time on a connected socket, so only datagrams from
// addr:port are read, and names the service from the first answer that
// matches. A port no probe is registered for, or that answers none, gets
// nil.
func (d *Detector) DetectUDP(ctx context.Context, addr netip.Addr, port uint16) (*snapshot.Service, error) {
	var soft *Fields
	for _, p := range d.db.Probes {
		if p.Protocol != "UDP" || !p.Ports.Contains(port) || p.Rarity > d.o.Intensity {
			continue
		}
		resp, err := d.udpExchange(ctx, addr, port, p)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			continue
		}
		f, hard, isSoft := d.match(p, resp)
		switch {
		case hard:
			return phaseResult{fields: f, found: true}.service(), nil
		case isSoft && soft == nil:
			soft = &f
		}
	}
	if soft != nil {
		return phaseResult{fields: *soft, found: true}.service(), nil
	}
	return nil, nil
}

// tftpPort is TFTP's port (RFC 1350).
const tftpPort = 69

// NewPortReplyPorts returns the UDP ports whose server answers from a port
// of its own rather than the probed one: TFTP's, whose server sends every
// packet of a transfer, an ERROR included, from a fresh transfer
// identifier. An answer to a probe of such a port counts when it comes
// from the probed address, whatever its source port, and is one of the
// protocol's packets (NewPortReply); from any other port of any other
// protocol it never does.
func NewPortReplyPorts() []uint16 { return []uint16{tftpPort} }

// NewPortReply says whether b, from the probed address but not the probed
// port, is an answer of the protocol of port (see NewPortReplyPorts): for
// TFTP, a DATA (3) or ERROR (5) packet.
func NewPortReply(port uint16, b []byte) bool {
	return port == tftpPort && len(b) >= 4 && b[0] == 0 && (b[1] == 3 || b[1] == 5)
}

func (d *Detector) udpExchange(ctx context.Context, addr netip.Addr, port uint16, p *Probe) ([]byte, error) {
	target := netip.AddrPortFrom(addr, port)
	var c net.Conn
	var pc *net.UDPConn
	if port == tftpPort {
		// Unconnected: the kernel would drop an answer from the server's
		// new port on a connected socket.
		lc := net.ListenConfig{Control: d.dialer.Control}
		laddr := "0.0.0.0:0"
		network := "udp4"
		if addr.Is6() {
			laddr, network = "[::]:0", "udp6"
		}
		l, err := lc.ListenPacket(ctx, network, laddr)
		if err != nil {
			return nil, err
		}
		pc = l.(*net.UDPConn)
		c = pc
	} else {
		dc, err := d.dialer.DialContext(ctx, "udp", target.String())
		if err != nil {
			return nil, err
		}
		c = dc
	}
	defer c.Close()
	wait := min(p.TotalWait, maxUDPWait)
	if wait <= 0 {
		wait = maxUDPWait
	}
	deadline := time.Now().Add(wait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	var err error
	if pc != nil {
		_, err = pc.WriteToUDPAddrPort(p.Payload, target)
	} else {
		_, err = c.Write(p.Payload)
	}
	if err != nil {
		return nil, err
	}
	buf := make([]byte, maxResponse)
	for {
		var n int
		if pc == nil {
			n, err = c.Read(buf)
		} else {
			var from netip.AddrPort
			n, from, err = pc.ReadFromUDPAddrPort(buf)
			if err == nil && (from.Addr().Unmap() != addr || from.Port() != port && !NewPortReply(port, buf[:n])) {
				continue // not from the probed host, or not its protocol
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, fmt.Errorf("udp probe %s: no answer", p.Name)
			}
			return nil, err
		}
		return buf[:n], nil
	}
}

// UDPPayloads returns the datagram the UDP sweep sends to each port that
// has a probe in the embedded UDP file: the payload of the port's most
// common probe (the lowest rarity; the first in the file on a tie). The
// file is the one home of UDP payloads; a port without a probe gets an
// empty datagram.
func UDPPayloads() (map[uint16][]byte, error) {
	db := NewDB()
	if err := udpDB(db); err != nil {
		return nil, err
	}
	out := map[uint16][]byte{}
	rarity := map[uint16]int{}
	for _, p := range db.Probes {
		if p.Protocol != "UDP" {
			continue
		}
		for _, rg := range p.Ports.r {
			for port := int(rg[0]); port <= int(rg[1]); port++ {
				if r, ok := rarity[uint16(port)]; ok && r <= p.Rarity {
					continue
				}
				rarity[uint16(port)] = p.Rarity
				out[uint16(port)] = p.Payload
			}
		}
	}
	return out, nil
}

// AnnotateUDP fills Service on every open UDP port of s that a UDP probe
// names, concurrently, until ctx ends.
func (d *Detector) AnnotateUDP(ctx context.Context, s *snapshot.Snapshot) {
	d.eachOpenPort(ctx, s, "udp", func(addr netip.Addr, p *snapshot.Port) {
		if svc, err := d.DetectUDP(ctx, addr, p.Port); err == nil && svc != nil {
			p.Service = svc
		}
	})
}
