package scanner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/scanner/spec"
	"github.com/exposure-monitor/exposure/snapshot"
)

// SmallScanPairs is the largest scan (addresses x ports) whose filtered
// ports are listed in the snapshot, and whose silent hosts are listed as
// down. Larger scans only count them: in a big sweep "filtered" is the
// overwhelming, uninteresting majority.
const SmallScanPairs = 100

// Reverse DNS is best effort and must not hold a scan up.
const (
	reverseDNSBudget      = 3 * time.Second
	reverseDNSConcurrency = 16
	maxHostnameLen        = 253
)

// SweepOptions describe one sweep of a target.
type SweepOptions struct {
	// Target names the snapshot (the config target, or the command line).
	Target string
	Ports  spec.Ports
	// Protocol is the ports' protocol, spec.ProtoTCP (the default when
	// empty) or spec.ProtoUDP, as the engine scans them.
	Protocol   string
	Retries    int
	Sequential bool
	// ReverseDNS looks up names of hosts that are up and did not come from
	// a hostname, within a bounded time.
	ReverseDNS bool
	// Bind is the interface the scan is bound to (the engine's binding),
	// nil for none: the system resolver's queries go out through it too.
	Bind *netif.Binding
	// Lookup resolves hostnames of the target spec; nil means the system
	// resolver (bound by Bind).
	Lookup spec.LookupFunc
	// ReverseLookup returns the PTR names of an address; nil means the
	// system resolver (bound by Bind).
	ReverseLookup func(ctx context.Context, addr string) ([]string, error)
	// Progress, if set, is called now and then with the pairs done so far.
	Progress func(done, total uint64)
}

// Sweep resolves t, scans every (address, port) pair with e and builds the
// snapshot. If ctx ends the scan early, the snapshot has Complete false and
// the error is nil; if the engine fails, the partial snapshot (Complete
// false) is returned together with the error.
func Sweep(ctx context.Context, e Engine, t *spec.Targets, o SweepOptions) (*snapshot.Snapshot, error) {
	r, err := SweepResults(ctx, e, t, o)
	if r == nil {
		return nil, err
	}
	return r.Snapshot(), err
}

// SweepResults is Sweep returning the results in compact form, for callers
// that stream them out rather than keep a snapshot.
func SweepResults(ctx context.Context, e Engine, t *spec.Targets, o SweepOptions) (*Results, error) {
	started := time.Now().UTC()
	resolver := net.DefaultResolver
	if r := boundResolver(o.Bind); r != nil {
		resolver = r
	}
	lookup := o.Lookup
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return resolver.LookupNetIP(ctx, "ip", host)
		}
	}
	addrs, err := t.Resolve(ctx, lookup)
	if err != nil {
		return nil, fmt.Errorf("resolve targets: %w", err)
	}
	proto := o.Protocol
	if proto == "" {
		proto = spec.ProtoTCP
	}
	order := spec.NewOrder(addrs, o.Ports, spec.OrderOptions{Sequential: o.Sequential})
	total := order.Len()
	res := newResults(addrs, proto, total <= SmallScanPairs)
	res.nports = o.Ports.Len()

	var done, closed, filtered uint64
	emit := func(r Result) {
		done++
		switch r.State {
		case snapshot.StateOpen:
		case snapshot.StateClosed:
			closed++
		default:
			filtered++
		}
		res.add(r)
		if o.Progress != nil && done%1024 == 0 {
			o.Progress(done, total)
		}
	}
	stats, scanErr := e.Scan(ctx, Job{Pairs: order, Retries: o.Retries}, emit)
	if o.Progress != nil {
		o.Progress(done, total)
	}
	res.finish()
	res.head = snapshot.Snapshot{
		Target:    o.Target,
		ID:        snapshot.NewID(o.Target, started),
		StartedAt: started,
		Complete:  scanErr == nil && done == total,
		Quality: snapshot.Quality{
			ProbesSent: stats.ProbesSent, Replies: stats.Replies, Retransmits: stats.Retransmits,
			Closed: closed, Filtered: filtered,
		},
	}
	if o.ReverseDNS && ctx.Err() == nil {
		var needName []netip.Addr
		res.up.union(nil, func(idx uint64) bool {
			if a := addrs.At(idx); addrs.Name(a) == "" {
				needName = append(needName, a)
			}
			return true
		})
		if len(needName) > 0 {
			rl := o.ReverseLookup
			if rl == nil {
				rl = resolver.LookupAddr
			}
			for a, n := range reverseNames(ctx, rl, needName) {
				if idx, ok := addrs.Index(netip.MustParseAddr(a)); ok {
					if res.names == nil {
						res.names = map[uint64]string{}
					}
					res.names[idx] = n
				}
			}
		}
	}
	res.head.FinishedAt = time.Now().UTC()
	if scanErr != nil && !errors.Is(scanErr, context.Canceled) && !errors.Is(scanErr, context.DeadlineExceeded) {
		return res, fmt.Errorf("sweep %s: %w", o.Target, scanErr)
	}
	return res, nil
}

// boundResolver is a resolver whose queries go out only through b's
// interface, nil without a binding: a scan bound to an interface sends
// nothing anywhere else, DNS included: a name server not routed through
// that interface answers nothing (/etc/hosts still does).
func boundResolver(b *netif.Binding) *net.Resolver {
	if b == nil {
		return nil
	}
	d := net.Dialer{Control: b.Control}
	return &net.Resolver{PreferGo: true, Dial: d.DialContext}
}

// reverseNames looks up PTR names with bounded concurrency and a bounded
// total time; addresses without an answer in time get none.
func reverseNames(ctx context.Context, lookup func(context.Context, string) ([]string, error), addrs []netip.Addr) map[string]string {
	ctx, cancel := context.WithTimeout(ctx, reverseDNSBudget)
	defer cancel()
	var (
		mu    sync.Mutex
		names = map[string]string{}
		wg    sync.WaitGroup
		sem   = make(chan struct{}, reverseDNSConcurrency)
	)
	for _, a := range addrs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ns, err := lookup(ctx, a.String())
			if err != nil || len(ns) == 0 {
				return
			}
			if n := cleanHostname(ns[0]); n != "" {
				mu.Lock()
				names[a.String()] = n
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return names
}

// cleanHostname vets a PTR answer, which comes from the network and ends
// up in logs, labels and alerts: a name with anything but letters, digits,
// '-', '_' and dots, or longer than a DNS name can be, is dropped whole
// rather than mangled into something that looks trustworthy.
func cleanHostname(s string) string {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > maxHostnameLen {
		return ""
	}
	for _, r := range s {
		ok := r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !ok {
			return ""
		}
	}
	return s
}
