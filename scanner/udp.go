package scanner

import (
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/scanner/service"
	"github.com/exposure-monitor/exposure/snapshot"
)

// KindUDP names the UDP engine.
const KindUDP = "udp"

var _ Engine = (*UDP)(nil)

// udpDefaultWindow bounds the UDP probes awaiting an answer.
const udpDefaultWindow = 4096

// UDPOptions configure the UDP engine.
type UDPOptions struct {
	// Limiter is the process-wide packet budget, shared by all scans.
	Limiter *rate.Limiter
	Logger  *slog.Logger
	// SourcePort is the fixed source port of every probe; 0 picks one
	// outside the kernel's ephemeral range.
	SourcePort uint16
	// Window bounds the outstanding probes; 0 means 4,096.
	Window int
	// InitialRTO, MinRTO and MaxRTO bound the adaptive probe timeout.
	InitialRTO, MinRTO, MaxRTO time.Duration
	// Bind, if set, binds every socket of a scan to its interface.
	Bind *netif.Binding
}

func (o *UDPOptions) validate() error {
	return settleProbeOptions(o.Limiter, &o.Logger, &o.Window, udpDefaultWindow, &o.InitialRTO, &o.MinRTO, &o.MaxRTO)
}

// UDP scans UDP ports the way nmap -sU does: each probe carries the payload
// of the port's usual protocol (udpPayload), any UDP answer from the probed
// address and port makes it open, an ICMP port unreachable closed, another
// ICMP unreachable filtered, and silence after the retries open|filtered.
//
// Probes leave through an ordinary UDP socket bound to the engine's source
// port, so the kernel delivers the answers to it (instead of answering them
// with a port unreachable of its own) and only answers from the probed
// address and port to that port count; the one exception is a protocol
// whose server answers from a port of its own (service.NewPortReplyPorts:
// TFTP), whose packets count from any port of the probed address. ICMP errors are read on raw
// sockets (CAP_NET_RAW) and count only when the datagram they quote is one
// of ours: our source port, a probed destination, our payload's length and
// its first bytes. Linux rate-limits port unreachables (about one a second
// per destination): the scan does not wait for them, so closed ports it
// misses end open|filtered, and open services, which answer at once, are
// never slowed down.
type UDP struct {
	opts  UDPOptions
	sport uint16
}

// NewUDP checks that raw ICMP sockets can be opened and picks the source
// port.
func NewUDP(o UDPOptions) (*UDP, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("udp engine: %w", err)
	}
	u := &UDP{opts: o, sport: o.SourcePort}
	if u.sport == 0 {
		lo, hi, err := ephemeralRange()
		if err != nil {
			return nil, fmt.Errorf("udp engine: %w", err)
		}
		if u.sport, err = pickSourcePort(lo, hi, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))); err != nil {
			return nil, fmt.Errorf("udp engine: %w", err)
		}
	}
	c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("udp engine: UDP scans need raw sockets (CAP_NET_RAW) to see ICMP port unreachables: %w", err)
	}
	c.Close()
	return u, nil
}

// Name implements Engine.
func (u *UDP) Name() string { return KindUDP }

// SourcePort is the engine's fixed probe source port.
func (u *UDP) SourcePort() uint16 { return u.sport }

// udpEvent is one packet a reader goroutine saw.
type udpEvent struct {
	key    pairKey
	icmp   bool
	typ    uint8
	code   uint8
	quoted []byte // the quoted UDP payload prefix (ICMP), or nil
	qlen   int    // the quoted UDP length field
	// alt are the probed ports this datagram, from another port of the
	// same address, answers (service.NewPortReplyPorts: TFTP).
	alt []uint16
	at  time.Time
}

// udpFamily holds one address family's sockets of a scan.
type udpFamily struct {
	conn *net.UDPConn
	icmp net.PacketConn
}

type udpScan struct {
	*UDP
	job     Job
	emit    func(Result)
	guard   *destGuard
	fam     [2]*udpFamily
	famErr  [2]error
	events  chan udpEvent
	readers sync.WaitGroup
	win     map[pairKey]*probe
	heap    probeHeap
	retx    []*probe
	done    bool
	est     *rttEstimator
	stats   Stats
}

// Scan implements Engine.
func (u *UDP) Scan(ctx context.Context, job Job, emit func(Result)) (Stats, error) {
	if job.Pairs == nil {
		return Stats{}, errors.New("udp scan: no pairs")
	}
	if err := u.opts.Bind.Check(); err != nil {
		return Stats{}, fmt.Errorf("udp scan: %w", err)
	}
	guard, err := newDestGuard()
	if err != nil {
		return Stats{}, fmt.Errorf("udp scan: %w", err)
	}
	sc := &udpScan{
		UDP: u, job: job, emit: emit, guard: guard,
		events: make(chan udpEvent, 4096),
		win:    make(map[pairKey]*probe),
		est:    newRTTEstimator(u.opts.InitialRTO, u.opts.MinRTO, u.opts.MaxRTO),
	}
	defer sc.close()
	err = sc.run(ctx)
	return sc.stats, err
}

func (sc *udpScan) close() {
	for _, f := range sc.fam {
		if f != nil {
			f.conn.Close()
			f.icmp.Close()
		}
	}
	sc.readers.Wait()
}

// family opens the sockets of family i on first use.
func (sc *udpScan) family(i int) (*udpFamily, error) {
	if sc.fam[i] != nil || sc.famErr[i] != nil {
		return sc.fam[i], sc.famErr[i]
	}
	netUDP, netICMP, laddr := "udp4", "ip4:icmp", "0.0.0.0"
	if i == famIPv6 {
		netUDP, netICMP, laddr = "udp6", "ip6:ipv6-icmp", "::"
	}
	lc := net.ListenConfig{}
	if sc.opts.Bind != nil {
		lc.Control = sc.opts.Bind.Control
	}
	ctx := context.Background()
	c, err := lc.ListenPacket(ctx, netUDP, net.JoinHostPort(laddr, fmt.Sprint(sc.sport)))
	if err != nil {
		sc.famErr[i] = fmt.Errorf("open udp socket: %w", err)
		return nil, sc.famErr[i]
	}
	ic, err := lc.ListenPacket(ctx, netICMP, laddr)
	if err != nil {
		c.Close()
		sc.famErr[i] = fmt.Errorf("open raw socket %s: %w", netICMP, err)
		return nil, sc.famErr[i]
	}
	f := &udpFamily{conn: c.(*net.UDPConn), icmp: ic}
	_ = f.conn.SetReadBuffer(rawRecvBuffer)
	sc.fam[i] = f
	sc.readers.Add(2)
	go sc.readUDP(f.conn)
	go sc.readICMP(ic, i == famIPv6)
	return f, nil
}

func (sc *udpScan) readUDP(c *net.UDPConn) {
	defer sc.readers.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		ev := udpReply(from, buf[:n])
		ev.at = time.Now()
		sc.events <- ev
	}
}

// udpReply is the event of a datagram b from from to our source port.
func udpReply(from netip.AddrPort, b []byte) udpEvent {
	ev := udpEvent{key: pairKey{from.Addr().Unmap(), from.Port()}}
	for _, port := range service.NewPortReplyPorts() {
		if port != from.Port() && service.NewPortReply(port, b) {
			ev.alt = append(ev.alt, port)
		}
	}
	return ev
}

func (sc *udpScan) readICMP(c net.PacketConn, v6 bool) {
	defer sc.readers.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if ev, ok := decodeUDPUnreach(buf[:n], v6, sc.sport); ok {
			ev.at = time.Now()
			sc.events <- ev
		}
	}
}

// decodeUDPUnreach decodes an ICMP or ICMPv6 message (no IP header, as raw
// sockets deliver them) that is a destination unreachable quoting a UDP
// datagram from source port sport.
func decodeUDPUnreach(msg []byte, v6 bool, sport uint16) (udpEvent, bool) {
	var ev udpEvent
	var inner []byte
	if v6 {
		// Type, code, checksum, 4 unused bytes, then the quoted packet.
		if len(msg) < 8 || msg[0] != icmp6Unreach {
			return ev, false
		}
		ev.typ, ev.code, inner = msg[0], msg[1], msg[8:]
		if len(inner) < 40+8 || inner[0]>>4 != 6 || inner[6] != protoUDP {
			return ev, false
		}
		ev.key.addr = netip.AddrFrom16([16]byte(inner[24:40])).Unmap()
		inner = inner[40:]
	} else {
		if len(msg) < 8 || msg[0] != icmp4Unreach {
			return ev, false
		}
		ev.typ, ev.code, inner = msg[0], msg[1], msg[8:]
		if len(inner) < 20 || inner[0]>>4 != 4 {
			return ev, false
		}
		ihl := int(inner[0]&0x0f) * 4
		if ihl < 20 || len(inner) < ihl+8 || inner[9] != protoUDP {
			return ev, false
		}
		ev.key.addr = netip.AddrFrom4([4]byte(inner[16:20]))
		inner = inner[ihl:]
	}
	if binary.BigEndian.Uint16(inner[0:2]) != sport {
		return ev, false
	}
	ev.icmp = true
	ev.key.port = binary.BigEndian.Uint16(inner[2:4])
	ev.qlen = int(binary.BigEndian.Uint16(inner[4:6]))
	ev.quoted = append([]byte(nil), inner[8:]...)
	return ev, true
}

// ours says whether an ICMP error's quoted datagram is the probe sent to
// port: its length and the bytes quoted of its payload.
func ours(ev udpEvent, payload []byte) bool {
	if ev.qlen != 8+len(payload) {
		return false
	}
	q := ev.quoted[:min(len(ev.quoted), len(payload))]
	return string(q) == string(payload[:len(q)])
}

func (sc *udpScan) run(ctx context.Context) error {
	retries := sc.job.Retries
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("udp scan: %w", err)
		}
		sc.drain()
		now := time.Now()
		for len(sc.heap) > 0 && !sc.heap[0].deadline.After(now) {
			p := heap.Pop(&sc.heap).(*probe)
			if p.tries <= retries {
				sc.retx = append(sc.retx, p)
				continue
			}
			sc.finish(p, Result{State: snapshot.StateOpenFiltered, Reason: "no-response"})
		}
		p := sc.next()
		if p == nil {
			if len(sc.win) == 0 && sc.done {
				return nil
			}
			if err := sc.wait(ctx); err != nil {
				return err
			}
			continue
		}
		if err := sc.opts.Limiter.Wait(ctx); err != nil {
			return fmt.Errorf("udp scan: %w", err)
		}
		sc.send(p)
	}
}

// wait handles events until the next deadline.
func (sc *udpScan) wait(ctx context.Context) error {
	d := 100 * time.Millisecond
	if len(sc.heap) > 0 {
		d = min(d, time.Until(sc.heap[0].deadline))
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case ev := <-sc.events:
		sc.handle(ev)
	case <-t.C:
	case <-ctx.Done():
		return fmt.Errorf("udp scan: %w", ctx.Err())
	}
	return nil
}

func (sc *udpScan) drain() {
	for {
		select {
		case ev := <-sc.events:
			sc.handle(ev)
		default:
			return
		}
	}
}

func (sc *udpScan) handle(ev udpEvent) {
	p, ok := sc.win[ev.key]
	for _, port := range ev.alt {
		if ok {
			break
		}
		// A TFTP server answers from a port of its own: its packet, from
		// the probed address to our port, answers our probe of port 69.
		p, ok = sc.win[pairKey{ev.key.addr, port}]
	}
	if !ok || p.tries == 0 {
		return
	}
	res := Result{State: snapshot.StateOpen, Reason: "udp-response", RTT: ev.at.Sub(p.sent)}
	if ev.icmp {
		if !ours(ev, udpPayload(ev.key.port)) {
			return
		}
		res.State = snapshot.StateFiltered
		res.Reason = fmt.Sprintf("icmp-unreach type %d code %d", ev.typ, ev.code)
		v6 := ev.key.addr.Is6()
		if !v6 && ev.code == 3 || v6 && ev.code == 4 {
			res.State, res.Reason = snapshot.StateClosed, "port-unreach"
		}
	}
	if p.tries == 1 {
		sc.est.sample(res.RTT)
	}
	sc.stats.Replies++
	if p.idx >= 0 {
		heap.Remove(&sc.heap, p.idx)
	}
	sc.finish(p, res)
}

func (sc *udpScan) finish(p *probe, r Result) {
	p.done = true
	delete(sc.win, p.key)
	r.Addr, r.Port = p.key.addr, p.key.port
	sc.emit(r)
}

// next returns a probe to (re)send, nil when none may go now.
func (sc *udpScan) next() *probe {
	for len(sc.retx) > 0 {
		p := sc.retx[0]
		sc.retx = sc.retx[1:]
		if !p.done {
			return p
		}
	}
	for !sc.done && len(sc.win) < sc.opts.Window {
		a, port, ok := sc.job.Pairs.Next()
		if !ok {
			sc.done = true
			break
		}
		k := pairKey{a.Unmap(), port}
		if _, dup := sc.win[k]; dup {
			continue
		}
		p := &probe{key: k, idx: -1}
		sc.win[k] = p
		return p
	}
	return nil
}

// send transmits p, or gives it its verdict when it cannot be sent.
func (sc *udpScan) send(p *probe) {
	dst := p.key.addr
	if err := sc.guard.check(dst); err != nil {
		sc.finish(p, Result{State: snapshot.StateFiltered, Reason: "not probed: " + err.Error()})
		return
	}
	if sc.opts.Bind != nil {
		if err := sc.opts.Bind.Route(dst); err != nil {
			sc.finish(p, Result{State: snapshot.StateFiltered, Reason: "not probed: " + err.Error()})
			return
		}
	}
	fi := famIPv4
	if dst.Is6() {
		fi = famIPv6
	}
	f, err := sc.family(fi)
	if err != nil {
		sc.finish(p, Result{State: snapshot.StateFiltered, Reason: "not probed: " + err.Error()})
		return
	}
	if _, err := f.conn.WriteToUDPAddrPort(udpPayload(p.key.port), netip.AddrPortFrom(dst, p.key.port)); err != nil {
		reason := "not probed: "
		if p.tries > 0 {
			reason = "no-response, retransmission not sent: "
		}
		sc.finish(p, Result{State: snapshot.StateFiltered, Reason: reason + err.Error()})
		return
	}
	p.tries++
	sc.stats.ProbesSent++
	if p.tries > 1 {
		sc.stats.Retransmits++
	}
	p.sent = time.Now()
	p.deadline = p.sent.Add(sc.est.timeout(p.tries))
	heap.Push(&sc.heap, p)
}
