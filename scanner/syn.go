package scanner

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/snapshot"
)

// Defaults of SYNOptions.
const (
	defaultWindow = 1 << 14
	maxSendBatch  = 64
	// minWindow is the least window the receive buffer may force.
	minWindow = 256
	// rawPacketTruesize is what one small reply costs in a socket's
	// receive buffer (sk_buff and data), generously.
	rawPacketTruesize = 1536
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
	// to it, not to the scan); 0 means 16,384. It is lowered further when
	// the receive buffer could not hold a window's worth of replies.
	Window int
	// InitialRTO, MinRTO and MaxRTO bound the adaptive probe timeout.
	InitialRTO, MinRTO, MaxRTO time.Duration
	// Bind, if set, binds the raw sockets and the source address lookup to
	// its network interface (see EngineOptions.Bind).
	Bind *netif.Binding
}

func (o *SYNOptions) validate() error {
	return settleProbeOptions(o.Limiter, &o.Logger, &o.Window, defaultWindow, &o.InitialRTO, &o.MinRTO, &o.MaxRTO)
}

// settleProbeOptions is the validation and defaulting the raw engines
// share: a limiter that lets packets through, a logger, a window and
// timeout bounds that are ordered.
func settleProbeOptions(lim *rate.Limiter, logger **slog.Logger, window *int, defWindow int, initial, minRTO, maxRTO *time.Duration) error {
	if lim == nil {
		return errNoLimiter
	}
	if lim.Limit() != rate.Inf && (lim.Limit() <= 0 || lim.Burst() < 1) {
		return fmt.Errorf("rate limiter allows no packets (limit %v, burst %d)", lim.Limit(), lim.Burst())
	}
	if *logger == nil {
		*logger = slog.New(slog.DiscardHandler)
	}
	if *window <= 0 {
		*window = defWindow
	}
	if *initial <= 0 {
		*initial = defaultInitialRTO
	}
	if *minRTO <= 0 {
		*minRTO = defaultMinRTO
	}
	if *maxRTO <= 0 {
		*maxRTO = defaultMaxRTO
	}
	if *minRTO > *maxRTO {
		return fmt.Errorf("minimum timeout %v above maximum %v", *minRTO, *maxRTO)
	}
	return nil
}

// SYN is the raw-socket half-open scanner. One SYN may run several scans
// at once; each opens its own sockets.
type SYN struct {
	opts  SYNOptions
	key   cookieKey
	sport uint16
	bind  *netif.Binding
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
	s := &SYN{opts: o, key: key, sport: o.SourcePort, bind: o.Bind}
	if s.sport == 0 {
		lo, hi, err := ephemeralRange()
		if err != nil {
			return nil, fmt.Errorf("syn engine: %w", err)
		}
		if s.sport, err = pickSourcePort(lo, hi, rand.New(rand.NewPCG(key.k0, key.k1))); err != nil {
			return nil, fmt.Errorf("syn engine: %w", err)
		}
	}
	// Only the privilege is checked here: the interface may not exist yet.
	f, err := openRaw(false, s.sport, 1, nil)
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
	if err := s.bind.Check(); err != nil {
		return Stats{}, fmt.Errorf("syn scan: %w", err)
	}
	// Built per scan, as the connect engine does: an engine lives as long
	// as the daemon, and networks may be added after it was made.
	guard, err := newDestGuard()
	if err != nil {
		return Stats{}, fmt.Errorf("syn scan: %w", err)
	}
	sc := &synScan{
		SYN:     s,
		guard:   guard,
		job:     job,
		emit:    emit,
		win:     make(map[pairKey]*probe),
		upHosts: newHostSet(),
		window:  s.opts.Window,
		est:     newRTTEstimator(s.opts.InitialRTO, s.opts.MinRTO, s.opts.MaxRTO),
		builder: newPacketBuilder(),
		srcs:    newSourceCache(s.bind),
		log:     s.opts.Logger,
	}
	sc.deadlineRTO = sc.est.rto
	defer sc.srcs.close()
	sc.startSenders()
	defer sc.shutdown()
	start := time.Now()
	err = sc.run(ctx)
	sc.log.Debug("syn scan finished", "took", time.Since(start), "probes", sc.stats.ProbesSent,
		"retransmits", sc.stats.Retransmits, "replies", sc.stats.Replies, "ring", sc.stats.RingSent,
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
	queued   bool // in the retransmit queue: not reusable yet
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

// synScan is the state of one Scan. It runs on the calling goroutine
// alone (send, receive, timeouts), like nmap's and masscan's loops: no
// locks, no hand-offs between threads.
type synScan struct {
	*SYN
	guard  *destGuard
	job    Job
	emit   func(Result)
	log    *slog.Logger
	fam    [2]*rawFamily
	famErr [2]error
	recv   []*receiver
	pfds   []unix.PollFd
	window int

	// Parallel senders: the kernel does most of a probe's work (routing,
	// the target's stack on a local network) in the sending thread, so
	// sending from one thread per CPU scales. With one CPU the loop sends
	// itself.
	workers  int
	sendq    chan *sendJob
	free     chan *sendJob
	fails    chan sendFail
	senderWG sync.WaitGroup

	win       map[pairKey]*probe
	spare     []*probe // finished probes for reuse: no garbage per pair
	timeouts  probeHeap
	retx      []*probe
	pairsDone bool
	allSent   time.Time // when the last new pair went out
	est       *rttEstimator
	// answeredLate counts replies that came only after a retransmission:
	// evidence of loss, from which retries adapts.
	answeredLate uint64
	// deadlineRTO is the timeout the pending deadlines were computed with,
	// at most; see redeadline.
	deadlineRTO time.Duration
	upHosts     *hostSet
	stats       Stats
	builder     *packetBuilder
	srcs        *sourceCache
	// rings are the senders' TX rings for IPv4 probes to on-link
	// neighbours of the bound Ethernet interface (see ring.go); nil
	// without a binding or where they cannot be opened.
	rings []*txRing
	link  ringLink
	neigh *neighbourCache
}

// Address families: the index of synScan.fam and famErr.
const (
	famIPv4 = 0
	famIPv6 = 1
)

// sendPath is the way a send job's packets leave: the IP sockets of one
// family, or IPv4 Ethernet frames on the senders' TX rings.
type sendPath int

const (
	pathIPv4 sendPath = famIPv4 // the IP sockets of famIPv4
	pathIPv6 sendPath = famIPv6 // the IP sockets of famIPv6
	pathRing sendPath = 2
	numPaths          = 3
)

// ipPath is the path through the IP sockets of family fam.
func ipPath(fam int) sendPath { return sendPath(fam) }

// family is the address family of an IP socket path.
func (p sendPath) family() int { return int(p) }

// sendJob is one batch of packets of one path for a sender.
type sendJob struct {
	path  sendPath
	arena []byte
	pkts  [][]byte
	dsts  []netip.Addr
	keys  []pairKey
	ends  []int // end offsets of the packets in arena
}

func (j *sendJob) reset(path sendPath) {
	j.path = path
	j.arena, j.pkts, j.dsts, j.keys, j.ends = j.arena[:0], j.pkts[:0], j.dsts[:0], j.keys[:0], j.ends[:0]
}

// sendFail reports a probe the kernel refused to send.
type sendFail struct {
	key pairKey
	err error
}

const maxSenders = 4

func (sc *synScan) startSenders() {
	sc.workers = max(1, min(runtime.GOMAXPROCS(0), maxSenders))
	sc.fails = make(chan sendFail, 1024)
	sc.free = make(chan *sendJob, 2*sc.workers)
	for range 2 * sc.workers {
		sc.free <- &sendJob{}
	}
	if sc.workers == 1 {
		return
	}
	sc.sendq = make(chan *sendJob, sc.workers)
	for i := range sc.workers {
		sc.senderWG.Add(1)
		go func() {
			defer sc.senderWG.Done()
			for j := range sc.sendq {
				sc.transmit(j, i)
				sc.free <- j
			}
		}()
	}
}

// transmit sends job j on sender i's socket, backing off on ENOBUFS (a
// queue on the way is full: slow down, do not drop).
func (sc *synScan) transmit(j *sendJob, i int) {
	pkts, dsts, keys := j.pkts, j.dsts, j.keys
	backoff := time.Millisecond
	for len(pkts) > 0 {
		var (
			n   int
			err error
		)
		if j.path == pathRing {
			n, err = sc.rings[i].send(pkts)
		} else {
			f := sc.fam[j.path.family()]
			n, err = sendTo(f.sendFDs[i], f.v6, pkts, dsts)
		}
		pkts, dsts, keys = pkts[n:], dsts[n:], keys[n:]
		if err == nil {
			return
		}
		if errors.Is(err, syscall.ENOBUFS) {
			time.Sleep(backoff)
			backoff = min(2*backoff, 100*time.Millisecond)
			continue
		}
		// This destination cannot be sent to (unreachable network,
		// firewall): a verdict for this probe, not the end of the scan.
		// Should the report not fit, the probe simply times out.
		select {
		case sc.fails <- sendFail{keys[0], err}:
		default:
		}
		pkts, dsts, keys = pkts[1:], dsts[1:], keys[1:]
	}
}

// handleFails gives the probes the kernel refused their verdicts.
func (sc *synScan) handleFails() {
	for {
		select {
		case f := <-sc.fails:
			if p, ok := sc.win[f.key]; ok {
				reason := f.err.Error()
				if u := errors.Unwrap(f.err); u != nil {
					reason = u.Error()
				}
				if sc.bind != nil && (errors.Is(f.err, syscall.ENODEV) || errors.Is(f.err, syscall.ENETDOWN)) {
					// The bound interface went away (or down) mid-scan:
					// the kernel sends nowhere else.
					reason = fmt.Sprintf("interface %s: %s", sc.bind.Name(), reason)
				}
				// Counted when queued; the kernel did not send it.
				sc.stats.ProbesSent--
				if p.tries > 1 {
					sc.stats.Retransmits--
					sc.drop(p, "no-response, retransmission not sent: "+reason)
					continue
				}
				sc.drop(p, "not probed: "+reason)
			}
		default:
			return
		}
	}
}

// takeJob takes a free send job for path, waiting for a sender to return
// one.
func (sc *synScan) takeJob(ctx context.Context, path sendPath) (*sendJob, error) {
	select {
	case j := <-sc.free:
		j.reset(path)
		return j, nil
	default:
	}
	select {
	case j := <-sc.free:
		j.reset(path)
		return j, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("syn scan: %w", ctx.Err())
	}
}

// dispatch hands j to a sender, or sends it inline with one worker.
func (sc *synScan) dispatch(j *sendJob) {
	if sc.workers == 1 {
		sc.transmit(j, 0)
		sc.free <- j
		return
	}
	sc.sendq <- j
}

func (sc *synScan) shutdown() {
	if sc.sendq != nil {
		close(sc.sendq)
		sc.senderWG.Wait()
	}
	for _, f := range sc.fam {
		if f != nil {
			f.close()
		}
	}
	// In parallel: closing a ring waits for an RCU grace period, tens of
	// milliseconds each.
	var wg sync.WaitGroup
	for _, r := range sc.rings {
		wg.Go(r.close)
	}
	wg.Wait()
}

// family returns the sockets of family i (famIPv4 or famIPv6), opening
// them on first use.
func (sc *synScan) family(i int) (*rawFamily, error) {
	if sc.fam[i] != nil || sc.famErr[i] != nil {
		return sc.fam[i], sc.famErr[i]
	}
	f, err := openRaw(i == famIPv6, sc.sport, sc.workers, sc.bind)
	if err == nil {
		err = sc.addReceivers(f, i == famIPv6)
		if err != nil {
			f.close()
		}
	}
	if err != nil {
		sc.famErr[i] = err
		return nil, err
	}
	sc.fam[i] = f
	if i == famIPv4 {
		sc.openRings()
	}
	// Replies a full window can produce must fit into the receive buffer,
	// or a busy CPU would turn into lost replies and retransmissions.
	if w := f.recvBuf / rawPacketTruesize; w < sc.window {
		sc.window = max(w, minWindow)
		sc.log.Debug("window bounded by the receive buffer", "window", sc.window, "rcvbuf", f.recvBuf)
	}
	return f, nil
}

// openRings opens the senders' TX rings when the scan is bound to an
// Ethernet interface; without them every probe takes the IP sockets.
func (sc *synScan) openRings() {
	if sc.bind == nil {
		return
	}
	if n := sc.job.Pairs.Len(); n < ringMinProbes {
		sc.log.Debug("no tx ring: scan too small to pay for its setup", "pairs", n)
		return
	}
	link, ok := ethernetLink(sc.bind)
	if !ok {
		sc.log.Debug("no tx ring: not an Ethernet interface", "interface", sc.bind.Name())
		return
	}
	// In parallel: setting a ring up waits for an RCU grace period or
	// two, some milliseconds each.
	rings := make([]*txRing, sc.workers)
	errs := make([]error, sc.workers)
	var wg sync.WaitGroup
	for i := range rings {
		wg.Go(func() { rings[i], errs[i] = openTxRing(link) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		sc.log.Debug("no tx ring", "interface", sc.bind.Name(), "err", err)
		for _, r := range rings {
			if r != nil {
				r.close()
			}
		}
		return
	}
	sc.rings, sc.link = rings, link
	sc.neigh = &neighbourCache{index: link.index}
}

func (sc *synScan) addReceivers(f *rawFamily, v6 bool) error {
	for _, c := range []struct {
		conn *net.IPConn
		icmp bool
	}{{f.tcp, false}, {f.icmp, true}} {
		r, err := newReceiver(c.conn, v6, c.icmp, sc.key, sc.sport)
		if err != nil {
			return err
		}
		sc.recv = append(sc.recv, r)
		sc.pfds = append(sc.pfds, unix.PollFd{Fd: int32(r.fd), Events: unix.POLLIN})
	}
	return nil
}

func (sc *synScan) run(ctx context.Context) error {
	batchMax := sendBatchSize(sc.opts.Limiter)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("syn scan: %w", err)
		}
		if _, err := sc.drain(); err != nil {
			return err
		}
		now := time.Now()
		sc.expire(now)
		n := len(sc.retx)
		if !sc.pairsDone {
			n += max(sc.window-len(sc.win), 0)
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
// first replies when early is set: they may free the window or finish the
// scan.
func (sc *synScan) waitUntil(ctx context.Context, t time.Time, early bool) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("syn scan: %w", err)
		}
		d := time.Until(t)
		if d <= 0 {
			return nil
		}
		// Wake up now and then to notice ctx.
		d = min(d, 100*time.Millisecond)
		ts := unix.NsecToTimespec(d.Nanoseconds())
		n, err := unix.Ppoll(sc.pfds, &ts, nil)
		if err != nil && err != unix.EINTR {
			return fmt.Errorf("syn scan: poll: %w", err)
		}
		if n > 0 {
			got, err := sc.drain()
			if err != nil {
				return err
			}
			if early && got > 0 {
				return nil
			}
		}
	}
}

// drain reads and handles every reply already queued on the sockets and
// returns how many packets it read.
func (sc *synScan) drain() (int, error) {
	total := 0
	for {
		// Until every socket was seen empty: a socket that came back
		// short had nothing more queued when it was read, so it needs no
		// further call just to hear EAGAIN.
		empty := true
		for _, r := range sc.recv {
			n, drained, err := r.readAvailable(1024, sc.handleNow)
			if err != nil {
				return total, fmt.Errorf("syn scan: %w", err)
			}
			total += n
			empty = empty && drained
		}
		if empty {
			return total, nil
		}
	}
}

func (sc *synScan) handleNow(rp reply) { sc.handle(rp, time.Now()) }

func (sc *synScan) handle(rp reply, at time.Time) {
	p, ok := sc.win[pairKey{rp.remote, rp.remotePort}]
	if !ok {
		return // duplicate, or later than the last timeout
	}
	res := Result{Addr: p.key.addr, Port: p.key.port, Reason: rp.reason(), RTT: at.Sub(p.sent)}
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
		if sc.est.rto < sc.deadlineRTO/2 {
			sc.redeadline()
		}
	} else {
		sc.answeredLate++
	}
	if rp.kind != replyUnreach && sc.upHosts.len() < maxUpHosts {
		sc.upHosts.add(p.key.addr)
	}
	sc.stats.Replies++
	sc.finish(p)
	sc.emit(res)
}

// redeadline recomputes the deadlines of the probes waiting for a reply
// after the timeout fell a lot, typically at the first RTT samples: the
// first probes went out under the initial timeout (1 s), and a lost one
// must not hold a scan of a fast network up for that long.
func (sc *synScan) redeadline() {
	for _, p := range sc.timeouts {
		p.deadline = p.sent.Add(sc.est.timeout(p.tries))
	}
	heap.Init(&sc.timeouts)
	sc.deadlineRTO = sc.est.rto
}

// finish removes p from the window.
func (sc *synScan) finish(p *probe) {
	if p.idx >= 0 {
		heap.Remove(&sc.timeouts, p.idx)
	}
	p.done = true
	delete(sc.win, p.key)
	if !p.queued {
		sc.spare = append(sc.spare, p)
	}
}

// expire moves timed-out probes to the retransmit queue, or gives them up
// as filtered once they had all their retries.
func (sc *synScan) expire(now time.Time) {
	for len(sc.timeouts) > 0 && !sc.timeouts[0].deadline.After(now) {
		p := heap.Pop(&sc.timeouts).(*probe)
		if p.tries <= sc.retries(p.key.addr) {
			p.queued = true
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
	if !sc.upHosts.has(addr) {
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
		p.queued = false
		if !p.done {
			return p
		}
		sc.spare = append(sc.spare, p)
	}
	if len(sc.retx) == 0 {
		sc.retx = sc.retx[:0:0]
	}
	if sc.pairsDone || len(sc.win) >= sc.window {
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
		var p *probe
		if n := len(sc.spare); n > 0 {
			p, sc.spare = sc.spare[n-1], sc.spare[:n-1]
			*p = probe{}
		} else {
			p = &probe{}
		}
		p.key, p.idx = k, -1
		sc.win[k] = p
		return p
	}
}

// drop gives up on p without a reply, with reason.
func (sc *synScan) drop(p *probe, reason string) {
	sc.finish(p)
	sc.emit(Result{Addr: p.key.addr, Port: p.key.port, State: snapshot.StateFiltered, Reason: reason})
}

// sendBatch sends up to n probes: each is made ready (prepare), built into
// the send job of its path (enqueue), and the jobs go to the senders once
// the batch is complete (flush).
func (sc *synScan) sendBatch(ctx context.Context, n int) error {
	b := batch{now: time.Now()}
	for range n {
		p := sc.next()
		if p == nil {
			break
		}
		fam, ok := sc.prepare(p, &b)
		if !ok {
			continue
		}
		if err := sc.enqueue(ctx, &b, p, fam); err != nil {
			return err
		}
	}
	sc.flush(&b)
	sc.handleFails()
	return nil
}

// batch is what one sendBatch builds: a send job per path, taken when the
// first probe of that path comes, and the time its probes count as sent.
type batch struct {
	jobs [numPaths]*sendJob
	now  time.Time
}

// prepare makes p ready to send: its destination allowed, its source
// address known, the sockets of its family open. It returns p's family,
// or false when it gave p its verdict instead.
func (sc *synScan) prepare(p *probe, b *batch) (int, bool) {
	dst := p.key.addr
	if err := sc.guard.check(dst); err != nil {
		sc.drop(p, "not probed: "+err.Error())
		return 0, false
	}
	if !p.src.IsValid() {
		src, err := sc.srcs.source(dst)
		if err != nil {
			// Bound to an interface, a destination it does not reach is
			// not probed: "no route via IFACE".
			reason := "no route"
			var nr *netif.NoRouteError
			if errors.As(err, &nr) {
				reason = nr.Error()
			}
			sc.drop(p, "not probed: "+reason)
			return 0, false
		}
		p.src = src
	}
	fam := famIPv4
	if dst.Is6() {
		fam = famIPv6
	}
	opening := sc.fam[fam] == nil && sc.famErr[fam] == nil
	if _, err := sc.family(fam); err != nil {
		sc.drop(p, "not probed: "+err.Error())
		return 0, false
	}
	if opening {
		// Opening the sockets (and TX rings) takes milliseconds, which
		// are not the probes' round trip.
		b.now = time.Now()
	}
	return fam, true
}

// enqueue builds p's SYN into the batch's job for its path: the TX ring
// for an IPv4 neighbour whose link-layer address is known, else the IP
// sockets of family fam.
func (sc *synScan) enqueue(ctx context.Context, b *batch, p *probe, fam int) error {
	dst := p.key.addr
	path := ipPath(fam)
	var mac net.HardwareAddr
	if fam == famIPv4 && sc.rings != nil {
		// Through a gateway the frame goes to the gateway's address: one
		// neighbour for a whole routed prefix.
		if hop := sc.srcs.nextHop(dst); hop.IsValid() {
			if m, ok := sc.neigh.lookup(hop, b.now); ok {
				path, mac = pathRing, m
			}
		}
	}
	j := b.jobs[path]
	if j == nil {
		var err error
		if j, err = sc.takeJob(ctx, path); err != nil {
			return err
		}
		b.jobs[path] = j
	}
	if path == pathRing {
		j.arena = appendEthernet(j.arena, mac, sc.link.mac)
	}
	build := sc.builder.syn
	if sc.fam[fam].hdrincl {
		build = sc.builder.syn4
	}
	seq := sc.key.cookie(p.src, dst, sc.sport, p.key.port)
	var err error
	j.arena, err = build(j.arena, p.src, dst, sc.sport, p.key.port, seq)
	if err != nil {
		return fmt.Errorf("syn scan: %w", err)
	}
	// Packets are sliced from the arena once it is complete (flush): it
	// may move while it grows.
	j.ends = append(j.ends, len(j.arena))
	j.dsts = append(j.dsts, dst)
	j.keys = append(j.keys, p.key)
	sc.sent(p, b.now)
	if path == pathRing {
		sc.stats.RingSent++
	}
	return nil
}

// flush slices the packets of each of the batch's jobs from its arena and
// hands the job to the senders.
func (sc *synScan) flush(b *batch) {
	for _, j := range b.jobs {
		if j == nil {
			continue
		}
		off := 0
		for _, end := range j.ends {
			j.pkts = append(j.pkts, j.arena[off:end:end])
			off = end
		}
		sc.dispatch(j)
	}
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
	sc.deadlineRTO = max(sc.deadlineRTO, sc.est.rto)
	heap.Push(&sc.timeouts, p)
}
