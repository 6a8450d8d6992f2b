package scanner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/snapshot"
)

// Defaults of ConnectOptions.
const (
	defaultConnectConcurrency = 512
	defaultConnectTimeout     = 1500 * time.Millisecond
)

// ConnectOptions configure the connect engine.
type ConnectOptions struct {
	// Limiter is the process-wide connection-attempt budget; nil means
	// unlimited (concurrency still bounds the engine).
	Limiter *rate.Limiter
	Logger  *slog.Logger
	// Concurrency bounds the connection attempts in flight; 0 means 512.
	Concurrency int
	// Timeout is the limit of one attempt; 0 means 1.5 s.
	Timeout time.Duration
	// Bind, if set, binds every connection to its network interface (see
	// EngineOptions.Bind).
	Bind *netif.Binding
}

func (o *ConnectOptions) validate() {
	if o.Limiter == nil {
		o.Limiter = rate.NewLimiter(rate.Inf, 0)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Concurrency <= 0 {
		o.Concurrency = defaultConnectConcurrency
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultConnectTimeout
	}
}

// Connect scans with full TCP connects: no privileges needed, the same
// result shape as SYN (refused is closed, no answer is filtered).
type Connect struct {
	opts ConnectOptions
}

// NewConnect returns a connect engine; zero options get defaults.
func NewConnect(o ConnectOptions) *Connect {
	o.validate()
	return &Connect{opts: o}
}

// Name implements Engine.
func (c *Connect) Name() string { return KindConnect }

type connectOutcome struct {
	res         Result
	attempts    uint64
	replied     bool
	interrupted bool
}

// Scan implements Engine.
func (c *Connect) Scan(ctx context.Context, job Job, emit func(Result)) (Stats, error) {
	if job.Pairs == nil {
		return Stats{}, errors.New("connect scan: no pairs")
	}
	guard, err := newDestGuard()
	if err != nil {
		return Stats{}, fmt.Errorf("connect scan: %w", err)
	}
	bind := c.opts.Bind
	if err := bind.Check(); err != nil {
		return Stats{}, fmt.Errorf("connect scan: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan pairKey)
	outcomes := make(chan connectOutcome, c.opts.Concurrency)
	for range c.opts.Concurrency {
		go func() {
			for k := range jobs {
				outcomes <- c.probe(ctx, guard, bind, k, job.Retries)
			}
		}()
	}

	var (
		st       Stats
		inflight int
		pending  pairKey
		have     bool
		done     bool
	)
	pull := func() {
		a, p, ok := job.Pairs.Next()
		pending, have = pairKey{a.Unmap(), p}, ok
		done = !ok
	}
	pull()
	interrupted := false
	for have || inflight > 0 {
		var feed chan<- pairKey
		if have && !interrupted {
			feed = jobs
		}
		if interrupted && inflight == 0 {
			break
		}
		select {
		case feed <- pending:
			inflight++
			pull()
		case o := <-outcomes:
			inflight--
			st.ProbesSent += o.attempts
			if o.attempts > 1 {
				st.Retransmits += o.attempts - 1
			}
			if o.replied {
				st.Replies++
			}
			if o.interrupted {
				interrupted = true
				continue
			}
			emit(o.res)
		case <-ctx.Done():
			interrupted = true
		}
	}
	close(jobs)
	if interrupted || !done {
		return st, fmt.Errorf("connect scan: %w", context.Cause(ctx))
	}
	return st, nil
}

// probe connects to k up to retries+1 times, through bind's interface if
// set: a destination it does not route to is not probed at all.
func (c *Connect) probe(ctx context.Context, guard *destGuard, bind *netif.Binding, k pairKey, retries int) connectOutcome {
	res := Result{Addr: k.addr, Port: k.port, State: snapshot.StateFiltered}
	if err := guard.check(k.addr); err != nil {
		res.Reason = "not probed: " + err.Error()
		return connectOutcome{res: res}
	}
	d := net.Dialer{Timeout: c.opts.Timeout, Control: bind.Control}
	var o connectOutcome
attempts:
	for try := 0; try <= retries; try++ {
		if err := c.opts.Limiter.Wait(ctx); err != nil {
			return connectOutcome{interrupted: true, attempts: o.attempts}
		}
		o.attempts++
		start := time.Now()
		conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(k.addr, k.port).String())
		rtt := time.Since(start)
		switch {
		case err == nil:
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // RST on close: no TIME_WAIT per open port
			}
			conn.Close()
			res.State, res.Reason, res.RTT = snapshot.StateOpen, "syn-ack", rtt
			o.replied = true
		case ctx.Err() != nil:
			o.interrupted = true
		case errors.Is(err, syscall.ECONNREFUSED):
			res.State, res.Reason, res.RTT = snapshot.StateClosed, "conn-refused", rtt
			o.replied = true
		case errors.Is(err, netif.ErrNoRoute):
			// Refused before connect: nothing was sent.
			o.attempts--
			var nr *netif.NoRouteError
			errors.As(err, &nr)
			res.Reason = "not probed: " + nr.Error()
		case errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err):
			res.Reason = "no-response"
			continue
		case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
			res.Reason = "host-unreach"
			o.replied = true
		default:
			res.Reason = "error: " + err.Error()
		}
		break attempts
	}
	o.res = res
	return o
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
