package scanner

import (
	"context"
	"errors"

	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// Merge adds the hosts, ports and figures of b (the UDP sweep of the same
// target) to a (its TCP sweep) and returns a: one snapshot per scan, as nmap
// prints -sS -sU together. Either may be nil; a is complete only when both
// are.
func Merge(a, b *snapshot.Snapshot) *snapshot.Snapshot {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	a.Complete = a.Complete && b.Complete
	a.Quality.ProbesSent += b.Quality.ProbesSent
	a.Quality.Replies += b.Quality.Replies
	a.Quality.Retransmits += b.Quality.Retransmits
	a.Quality.Closed += b.Quality.Closed
	a.Quality.Filtered += b.Quality.Filtered
	if b.FinishedAt.After(a.FinishedAt) {
		a.FinishedAt = b.FinishedAt
	}
	idx := map[string]int{}
	for i, h := range a.Hosts {
		idx[h.Address] = i
	}
	for _, h := range b.Hosts {
		i, ok := idx[h.Address]
		if !ok {
			a.Hosts = append(a.Hosts, h)
			idx[h.Address] = len(a.Hosts) - 1
			continue
		}
		dst := &a.Hosts[i]
		dst.Ports = append(dst.Ports, h.Ports...)
		dst.Unlisted.Merge(h.Unlisted)
		if h.State == snapshot.HostUp {
			dst.State = snapshot.HostUp
		}
		if dst.Hostname == "" {
			dst.Hostname = h.Hostname
		}
	}
	a.Sort()
	return a
}

// Engines are the engines of a sweep with protocols: TCP scans the TCP
// ports (SYN or connect), UDP the UDP ports (nil when none are scanned).
type Engines struct {
	TCP, UDP Engine
}

// ErrNoUDPEngine is returned by SweepSpec for a spec with UDP ports and no
// UDP engine.
var ErrNoUDPEngine = errors.New("UDP ports need the UDP engine (raw sockets): the connect engine scans TCP only")

// SweepSpec sweeps the TCP ports of ports with e.TCP, then its UDP ports
// with e.UDP, and merges both into one snapshot, as nmap -sS -sU prints
// one report; o.Ports and o.Protocol are set for each part. Like Sweep it
// returns a partial snapshot (Complete false) with the error when a part
// fails, and the UDP part is still tried after a failed TCP one (the
// snapshot stays incomplete); a ctx that ends skips what is left.
func SweepSpec(ctx context.Context, e Engines, t *spec.Targets, ports spec.PortSpec, o SweepOptions) (*snapshot.Snapshot, error) {
	var (
		snap *snapshot.Snapshot
		errs []error
	)
	if ports.TCP.Len() > 0 {
		if e.TCP == nil {
			return nil, errors.New("sweep: TCP ports and no TCP engine")
		}
		o.Ports, o.Protocol = ports.TCP, spec.ProtoTCP
		s, err := Sweep(ctx, e.TCP, t, o)
		if s == nil {
			return nil, err
		}
		snap = s
		if err != nil {
			errs = append(errs, err)
		}
	}
	if ports.UDP.Len() > 0 && ctx.Err() == nil {
		if e.UDP == nil {
			if snap != nil {
				snap.Complete = false
			}
			return snap, ErrNoUDPEngine
		}
		o.Ports, o.Protocol = ports.UDP, spec.ProtoUDP
		s, err := Sweep(ctx, e.UDP, t, o)
		if s == nil {
			if snap != nil {
				snap.Complete = false
			}
			return snap, errors.Join(append(errs, err)...)
		}
		if err != nil {
			errs = append(errs, err)
		}
		snap = Merge(snap, s)
	} else if ports.UDP.Len() > 0 && snap != nil {
		snap.Complete = false // the UDP part was not scanned
	}
	if snap == nil {
		return nil, errors.Join(append(errs, errors.New("sweep: empty port spec"))...)
	}
	return snap, errors.Join(errs...)
}
