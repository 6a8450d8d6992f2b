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

func (d *Detector) udpExchange(ctx context.Context, addr netip.Addr, port uint16, p *Probe) ([]byte, error) {
	c, err := d.dialer.DialContext(ctx, "udp", netip.AddrPortFrom(addr, port).String())
	if err != nil {
		return nil, err
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
	if _, err := c.Write(p.Payload); err != nil {
		return nil, err
	}
	buf := make([]byte, maxResponse)
	n, err := c.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("udp probe %s: no answer", p.Name)
		}
		return nil, err
	}
	return buf[:n], nil
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
