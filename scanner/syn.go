package scanner

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/snapshot"
)

// Defaults of SYNOptions.
const (
	defaultWindow = 1 << 16
	maxSendBatch  = 64
)

// SYNOptions configure the SYN engine.
type SYNOptions struct {
	// Limiter is the process-wide packet budget, shared by all scans.
	Limiter *rate.Limiter
	Logger  *slog.Logger
	// SourcePort is the fixed source port of every probe; 0 picks a random
	// one outside the kernel's ephemeral range.
	SourcePort uint16
	// Window bounds the probes awaiting an answer (memory is proportional
	// to it, not to the scan); 0 means 65,536.
	Window int
	// InitialRTO, MinRTO and MaxRTO bound the adaptive probe timeout.
	InitialRTO, MinRTO, MaxRTO time.Duration
}

func (o *SYNOptions) validate() error {
	if o.Limiter == nil {
		return errNoLimiter
	}
	if o.Limiter.Limit() != rate.Inf && (o.Limiter.Limit() <= 0 || o.Limiter.Burst() < 1) {
		return fmt.Errorf("rate limiter allows no packets (limit %v, burst %d)", o.Limiter.Limit(), o.Limiter.Burst())
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Window <= 0 {
		o.Window = defaultWindow
	}
	if o.InitialRTO <= 0 {
		o.InitialRTO = defaultInitialRTO
	}
	if o.MinRTO <= 0 {
		o.MinRTO = defaultMinRTO
	}
	if o.MaxRTO <= 0 {
		o.MaxRTO = defaultMaxRTO
	}
	if o.MinRTO > o.MaxRTO {
		return fmt.Errorf("minimum timeout %v above maximum %v", o.MinRTO, o.MaxRTO)
	}
	return nil
}

// SYN is the raw-socket half-open scanner. One SYN may run several scans
// at once; each opens its own sockets.
type SYN struct {
	opts  SYNOptions
	key   cookieKey
	sport uint16
	guard *destGuard
}

// NewSYN checks that raw sockets can be opened (CAP_NET_RAW) and picks the
// engine's source port and cookie key.
func NewSYN(o SYNOptions) (*SYN, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("syn engine: %w", err)
	}
	key, err := newCookieKey()
	if err != nil {
		return nil, fmt.Errorf("syn engine: %w", err)
	}
	s := &SYN{opts: o, key: key, sport: o.SourcePort}
	if s.sport == 0 {
		lo, hi, err := ephemeralRange()
		if err != nil {
			return nil, fmt.Errorf("syn engine: %w", err)
		}
		if s.sport, err = pickSourcePort(lo, hi, rand.New(rand.NewPCG(key.k0, key.k1))); err != nil {
			return nil, fmt.Errorf("syn engine: %w", err)
		}
	}
	if s.guard, err = newDestGuard(); err != nil {
		return nil, fmt.Errorf("syn engine: %w", err)
	}
	f, err := openRaw(false, s.sport)
	if err != nil {
		return nil, fmt.Errorf("syn engine: %w", err)
	}
	f.close()
	return s, nil
}

// Name implements Engine.
func (s *SYN) Name() string { return KindSYN }

// SourcePort is the engine's fixed probe source port.
func (s *SYN) SourcePort() uint16 { return s.sport }

// Scan implements Engine.
func (s *SYN) Scan(ctx context.Context, job Job, emit func(Result)) (Stats, error) {
	if job.Pairs == nil {
		return Stats{}, errors.New("syn scan: no pairs")
	}
	sc := &synScan{
		SYN:     s,
		job:     job,
		emit:    emit,
		replies: make(chan replyBatch, 1024),
		done:    make(chan struct{}),
		win:     make(map[pairKey]*probe),
		upHosts: make(map[netip.Addr]struct{}),
		est:     newRTTEstimator(s.opts.InitialRTO, s.opts.MinRTO, s.opts.MaxRTO),
		builder: newPacketBuilder(),
		srcs:    newSourceCache(),
		timer:   time.NewTimer(time.Hour),
		log:     s.opts.Logger,
	}
	sc.timer.Stop()
	defer sc.shutdown()
	start := time.Now()
	err := sc.run(ctx)
	sc.log.Debug("syn scan finished", "took", time.Since(start), "probes", sc.stats.ProbesSent,
		"retransmits", sc.stats.Retransmits, "replies", sc.stats.Replies,
		"srtt", sc.est.srtt, "rttvar", sc.est.rttvar, "rto", sc.est.rto, "tail", time.Since(sc.allSent), "err", err)
	return sc.stats, err
}

// probe is one pair in the window.
type probe struct {
	key      pairKey
	src      netip.Addr
	tries    int
	sent     time.Time
	deadline time.Time
	idx      int // position in the timeout heap, -1 when not in it
	done     bool
}

// probeHeap orders outstanding probes by deadline.
type probeHeap []*probe

func (h probeHeap) Len() int           { return len(h) }
func (h probeHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h probeHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *probeHeap) Push(x any) { p := x.(*probe); p.idx = len(*h); *h = append(*h, p) }
func (h *probeHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	p.idx = -1
	return p
}

type replyBatch struct {
	rs []reply
	at time.Time
}

// synScan is the state of one Scan. Everything but the receivers runs on
// the calling goroutine, so the window needs no locks.
type synScan struct {
	*SYN
	job     Job
	emit    func(Result)
	log     *slog.Logger
	fam     [2]*rawFamily
	famErr  [2]error
	recvWG  sync.WaitGroup
	replies chan replyBatch
	done    chan struct{}

	win       map[pairKey]*probe
	timeouts  probeHeap
	retx      []*probe
	pairsDone bool
	allSent   time.Time // when the last new pair went out
	est       *rttEstimator
	// answeredLate counts replies that came only after a retransmission:
	// evidence of loss, from which retries adapts.
	answeredLate uint64
	upHosts      map[netip.Addr]struct{}
	stats     Stats
	builder   *packetBuilder
	srcs      *sourceCache
	timer     *time.Timer

	// scratch for one send batch, per family
	arena  [2][]byte
	pkts   [2][][]byte
	dsts   [2][]netip.Addr
	probes [2][]*probe
}

func (sc *synScan) shutdown() {
	close(sc.done)
	for _, f := range sc.fam {
		if f != nil {
			f.close()
		}
	}
	sc.recvWG.Wait()
	sc.timer.Stop()
}

// family returns the sockets for v4 (0) or v6 (1), opening them and their
// receivers on first use.
func (sc *synScan) family(i int) (*rawFamily, error) {
	if sc.fam[i] != nil || sc.famErr[i] != nil {
		return sc.fam[i], sc.famErr[i]
	}
	f, err := openRaw(i == 1, sc.sport)
	if err != nil {
		sc.famErr[i] = err
		return nil, err
	}
	sc.fam[i] = f
	deliver := func(rs []reply, at time.Time) bool {
		select {
		case sc.replies <- replyBatch{rs, at}:
			return true
		case <-sc.done:
			return false
		}
	}
	for _, r := range []*receiver{
		{conn: f.tcp, v6: i == 1, key: sc.key, sport: sc.sport, deliver: deliver},
		{conn: f.icmp, v6: i == 1, icmp: true, key: sc.key, sport: sc.sport, deliver: deliver},
	} {
		sc.recvWG.Add(1)
		go func() {
			defer sc.recvWG.Done()
			r.run()
		}()
	}
	return f, nil
}

func (sc *synScan) run(ctx context.Context) error {
	batchMax := sendBatchSize(sc.opts.Limiter)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("syn scan: %w", err)
		}
		sc.drain()
		now := time.Now()
		sc.expire(now)
		n := len(sc.retx)
		if !sc.pairsDone {
			n += max(sc.opts.Window-len(sc.win), 0)
		}
		if n == 0 {
			if len(sc.win) == 0 && sc.pairsDone {
				return nil
			}
			if len(sc.timeouts) == 0 {
				return fmt.Errorf("syn scan: %d probes outstanding without a timeout", len(sc.win))
			}
			if err := sc.waitUntil(ctx, sc.timeouts[0].deadline, true); err != nil {
				return err
			}
			continue
		}
		n = min(n, batchMax)
		r := sc.opts.Limiter.ReserveN(now, n)
		if !r.OK() {
			return fmt.Errorf("syn scan: rate limiter refused %d packets", n)
		}
		if d := r.DelayFrom(now); d > 0 {
			if err := sc.waitUntil(ctx, now.Add(d), false); err != nil {
				r.Cancel()
				return err
			}
		}
		if err := sc.sendBatch(ctx, n); err != nil {
			return err
		}
	}
}

// sendBatchSize sends about a millisecond's worth of packets per batch.
func sendBatchSize(l *rate.Limiter) int {
	if l.Limit() == rate.Inf {
		return maxSendBatch
	}
	return max(1, min(int(l.Limit()/1000), maxSendBatch, l.Burst()))
}

// waitUntil handles replies until t (or ctx is done), or only until the
// first batch of replies when early is set: they may free the window or
// finish the scan.
func (sc *synScan) waitUntil(ctx context.Context, t time.Time, early bool) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	sc.timer.Reset(d)
	defer sc.timer.Stop()
	for {
		select {
		case b := <-sc.replies:
			sc.handle(b)
			if early {
				return nil
			}
		case <-sc.timer.C:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("syn scan: %w", ctx.Err())
		}
	}
}

// drain handles the replies already queued without blocking.
func (sc *synScan) drain() {
	for {
		select {
		case b := <-sc.replies:
			sc.handle(b)
		default:
			return
		}
	}
}

func (sc *synScan) handle(b replyBatch) {
	for _, rp := range b.rs {
		p, ok := sc.win[pairKey{rp.remote, rp.remotePort}]
		if !ok {
			continue // duplicate, or later than the last timeout
		}
		res := Result{Addr: p.key.addr, Port: p.key.port, Reason: rp.reason(), RTT: b.at.Sub(p.sent)}
		switch rp.kind {
		case replySynAck:
			res.State = snapshot.StateOpen
		case replyRST:
			res.State = snapshot.StateClosed
		default:
			res.State = snapshot.StateFiltered
		}
		if p.tries == 1 { // Karn: only unambiguous samples
			sc.est.sample(res.RTT)
		} else {
			sc.answeredLate++
		}
		if rp.kind != replyUnreach && len(sc.upHosts) < maxUpHosts {
			sc.upHosts[p.key.addr] = struct{}{}
		}
		sc.stats.Replies++
		sc.finish(p)
		sc.emit(res)
	}
}

// finish removes p from the window.
func (sc *synScan) finish(p *probe) {
	if p.idx >= 0 {
		heap.Remove(&sc.timeouts, p.idx)
	}
	p.done = true
	delete(sc.win, p.key)
}

// expire moves timed-out probes to the retransmit queue, or gives them up
// as filtered once they had all their retries.
func (sc *synScan) expire(now time.Time) {
	for len(sc.timeouts) > 0 && !sc.timeouts[0].deadline.After(now) {
		p := heap.Pop(&sc.timeouts).(*probe)
		if p.tries <= sc.retries(p.key.addr) {
			sc.retx = append(sc.retx, p)
			continue
		}
		sc.finish(p)
		sc.emit(Result{Addr: p.key.addr, Port: p.key.port, State: snapshot.StateFiltered, Reason: "no-response"})
	}
}

// Adaptive retries.
const (
	maxAdaptiveRetries = 8
	// missBudget is the expected number of pairs of a scan that may end
	// filtered only because every transmission was lost.
	missBudget = 1e-3
	maxUpHosts = 1 << 20
)

// retries is how many retransmissions a probe to addr gets. It is
// job.Retries, raised when the scan has seen loss towards hosts that are
// up: with a drop rate p, a probe is lost r+1 times with probability
// p^(r+1), so r grows until that stays below missBudget for the whole
// scan. Loss costs a few packets, never correctness. Hosts that never
// answered get job.Retries (a firewall that drops everything is no loss).
func (sc *synScan) retries(addr netip.Addr) int {
	base := sc.job.Retries
	if sc.answeredLate == 0 || sc.stats.Replies == 0 {
		return base
	}
	if _, up := sc.upHosts[addr]; !up {
		return base
	}
	p := float64(sc.answeredLate) / float64(sc.stats.Replies)
	n := max(float64(sc.job.Pairs.Len()), 1)
	r := base
	for r < maxAdaptiveRetries && math.Pow(p, float64(r+1))*n > missBudget {
		r++
	}
	return max(r, base)
}

// next returns the next probe to send: a retransmission first, else a new
// pair if the window has room. nil when there is none.
func (sc *synScan) next() *probe {
	for len(sc.retx) > 0 {
		p := sc.retx[0]
		sc.retx[0] = nil
		sc.retx = sc.retx[1:]
		if !p.done {
			return p
		}
	}
	if len(sc.retx) == 0 {
		sc.retx = sc.retx[:0:0]
	}
	if sc.pairsDone || len(sc.win) >= sc.opts.Window {
		return nil
	}
	for {
		a, port, ok := sc.job.Pairs.Next()
		if !ok {
			sc.pairsDone = true
			sc.allSent = time.Now()
			return nil
		}
		k := pairKey{a.Unmap(), port}
		if _, dup := sc.win[k]; dup {
			continue // the same pair twice in one job: one probe answers both
		}
		p := &probe{key: k, idx: -1}
		sc.win[k] = p
		return p
	}
}

// drop gives up on p without a reply, with reason.
func (sc *synScan) drop(p *probe, reason string) {
	sc.finish(p)
	sc.emit(Result{Addr: p.key.addr, Port: p.key.port, State: snapshot.StateFiltered, Reason: reason})
}

// sendBatch sends up to n probes.
func (sc *synScan) sendBatch(ctx context.Context, n int) error {
	for i := range sc.pkts {
		sc.arena[i] = sc.arena[i][:0]
		sc.pkts[i] = sc.pkts[i][:0]
		sc.dsts[i] = sc.dsts[i][:0]
		sc.probes[i] = sc.probes[i][:0]
	}
	for range n {
		p := sc.next()
		if p == nil {
			break
		}
		dst := p.key.addr
		if err := sc.guard.check(dst); err != nil {
			sc.drop(p, "not probed: "+err.Error())
			continue
		}
		if !p.src.IsValid() {
			src, err := sc.srcs.source(dst)
			if err != nil {
				sc.drop(p, "not probed: no route")
				continue
			}
			p.src = src
		}
		fi := 0
		if dst.Is6() {
			fi = 1
		}
		if _, err := sc.family(fi); err != nil {
			sc.drop(p, "not probed: "+err.Error())
			continue
		}
		seq := sc.key.cookie(p.src, dst, sc.sport, p.key.port)
		start := len(sc.arena[fi])
		var err error
		sc.arena[fi], err = sc.builder.syn(sc.arena[fi], p.src, dst, sc.sport, p.key.port, seq)
		if err != nil {
			return fmt.Errorf("syn scan: %w", err)
		}
		sc.pkts[fi] = append(sc.pkts[fi], sc.arena[fi][start:len(sc.arena[fi]):len(sc.arena[fi])])
		sc.dsts[fi] = append(sc.dsts[fi], dst)
		sc.probes[fi] = append(sc.probes[fi], p)
	}
	for fi := range sc.pkts {
		if err := sc.sendFamily(ctx, fi); err != nil {
			return err
		}
	}
	return nil
}

// sendFamily writes the batched packets of one family, backing off on
// ENOBUFS (the qdisc or device queue is full: slow down, do not drop).
func (sc *synScan) sendFamily(ctx context.Context, fi int) error {
	pkts, dsts, probes := sc.pkts[fi], sc.dsts[fi], sc.probes[fi]
	backoff := time.Millisecond
	for len(pkts) > 0 {
		now := time.Now()
		n, err := sc.fam[fi].send(pkts, dsts)
		for _, p := range probes[:n] {
			sc.sent(p, now)
		}
		pkts, dsts, probes = pkts[n:], dsts[n:], probes[n:]
		if err == nil {
			return nil
		}
		if errors.Is(err, syscall.ENOBUFS) {
			sc.log.Debug("send buffer full, backing off", "backoff", backoff)
			if err := sc.waitUntil(ctx, time.Now().Add(backoff), false); err != nil {
				return err
			}
			backoff = min(2*backoff, 100*time.Millisecond)
			continue
		}
		// This destination cannot be sent to (unreachable network,
		// firewall): a verdict for this probe, not the end of the scan.
		if !probes[0].done {
			sc.drop(probes[0], "not probed: "+errors.Unwrap(err).Error())
		}
		pkts, dsts, probes = pkts[1:], dsts[1:], probes[1:]
	}
	return nil
}

// sent records a transmission of p.
func (sc *synScan) sent(p *probe, now time.Time) {
	if p.done {
		return
	}
	p.tries++
	sc.stats.ProbesSent++
	if p.tries > 1 {
		sc.stats.Retransmits++
	}
	p.sent = now
	p.deadline = now.Add(sc.est.timeout(p.tries))
	heap.Push(&sc.timeouts, p)
}
