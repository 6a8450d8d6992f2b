package scanner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/scanner/spec"
)

// Result is the verdict on one (address, port) pair.
type Result struct {
	Addr netip.Addr
	Port uint16
	// State is snapshot.StateOpen, StateClosed or StateFiltered.
	State string
	// Reason says why, nmap style: "syn-ack", "reset", "no-response",
	// "icmp-unreach type 3 code 13", "conn-refused", ...
	Reason string
	// RTT is the round-trip time of the answer, zero without one.
	RTT time.Duration
}

// Stats are an engine's counters for one Scan.
type Stats struct {
	ProbesSent  uint64
	Replies     uint64
	Retransmits uint64
	// RingSent counts the probes handed to the TX ring (SYN engine, bound
	// to an Ethernet interface); they are in ProbesSent too.
	RingSent uint64
}

// Job is one scan: the pairs to probe, in the order to probe them, and how
// often an unanswered probe is retransmitted.
type Job struct {
	Pairs   spec.Pairs
	Retries int
}

// Engine scans pairs and streams one Result per pair to emit as verdicts
// are reached; emit is called from a single goroutine. Scan returns when
// every pair has a verdict or ctx is done (then with ctx's error, and some
// pairs without a Result).
type Engine interface {
	Name() string
	Scan(ctx context.Context, job Job, emit func(Result)) (Stats, error)
}

// Engine kinds for NewEngine.
const (
	KindSYN     = "syn"
	KindConnect = "connect"
	KindAuto    = "auto"
)

// EngineKinds lists the kinds NewEngine accepts: the values of --engine
// and of the configuration's engine.
func EngineKinds() []string { return []string{KindSYN, KindConnect, KindAuto} }

var (
	_ Engine = (*SYN)(nil)
	_ Engine = (*Connect)(nil)
)

// EngineOptions are what NewEngine passes on to the engine it builds.
type EngineOptions struct {
	// Limiter is the process-wide packet budget shared by all scans (nil:
	// unlimited).
	Limiter *rate.Limiter
	Logger  *slog.Logger
	// Bind, if set, binds every socket of the engine's scans to its
	// network interface (SO_BINDTODEVICE, like nmap's -e): a destination
	// not routed through it is not probed. The interface need not exist
	// yet; a scan fails if it does not when the scan starts.
	Bind *netif.Binding
}

// NewEngine builds the engine of the given kind. "auto" picks SYN when a raw
// socket can be opened and connect otherwise, and logs one line saying which
// and why.
func NewEngine(kind string, o EngineOptions) (Engine, error) {
	logger, limiter := o.Logger, o.Limiter
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if limiter == nil {
		limiter = rate.NewLimiter(rate.Inf, 0)
	}
	syn := SYNOptions{Limiter: limiter, Logger: logger, Bind: o.Bind}
	conn := ConnectOptions{Limiter: limiter, Logger: logger, Bind: o.Bind}
	switch kind {
	case KindSYN:
		return NewSYN(syn)
	case KindConnect:
		return NewConnect(conn), nil
	case KindAuto, "":
		s, err := NewSYN(syn)
		if err == nil {
			logger.Info("using the SYN engine: raw sockets are available")
			return s, nil
		}
		logger.Info("using the connect engine: raw sockets are not available", "err", err)
		return NewConnect(conn), nil
	}
	return nil, fmt.Errorf("unknown engine %q (want syn, connect or auto)", kind)
}

// errNoLimiter is returned by option validation when no limiter is set.
var errNoLimiter = errors.New("a rate limiter is required")

// pairKey identifies a probe in an engine's window.
type pairKey struct {
	addr netip.Addr
	port uint16
}
