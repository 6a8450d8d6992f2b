package service

import (
	"context"
	"net/netip"

	"github.com/exposure-monitor/exposure/snapshot"
)

// AnnotateMissing is Annotate for the open TCP ports of s that have no
// Service yet: a port that already carries one (the daemon copied it from
// the previous scan, see monitor's incremental detection) is not probed.
// On a fresh sweep, where no port has a Service, it is Annotate.
func (d *Detector) AnnotateMissing(ctx context.Context, s *snapshot.Snapshot) {
	d.annotate(ctx, s, func(p *snapshot.Port) bool { return p.Service == nil })
}

// annotate runs TCP detection on the open ports of s that want accepts.
func (d *Detector) annotate(ctx context.Context, s *snapshot.Snapshot, want func(*snapshot.Port) bool) {
	d.eachOpenPort(ctx, s, "tcp", func(addr netip.Addr, p *snapshot.Port) {
		if want(p) {
			d.annotatePort(ctx, addr, p)
		}
	})
}
