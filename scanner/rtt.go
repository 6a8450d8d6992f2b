package scanner

import "time"

// Timeout bounds of the SYN engine, nmap -T4 like.
const (
	defaultInitialRTO = time.Second
	defaultMinRTO     = 20 * time.Millisecond
	defaultMaxRTO     = 2 * time.Second
)

// rttEstimator is TCP's retransmission timer (RFC 6298): SRTT and RTTVAR
// from samples of probes answered on their first transmission (Karn), the
// timeout bounded by min and max.
type rttEstimator struct {
	srtt, rttvar time.Duration
	rto          time.Duration
	min, max     time.Duration
	sampled      bool
}

func newRTTEstimator(initial, lo, hi time.Duration) *rttEstimator {
	e := &rttEstimator{min: lo, max: hi}
	e.rto = e.clamp(initial)
	return e
}

func (e *rttEstimator) clamp(d time.Duration) time.Duration {
	return min(max(d, e.min), e.max)
}

// sample feeds one measured round-trip time.
func (e *rttEstimator) sample(r time.Duration) {
	if r < 0 {
		return
	}
	if !e.sampled {
		e.srtt, e.rttvar, e.sampled = r, r/2, true
	} else {
		d := e.srtt - r
		if d < 0 {
			d = -d
		}
		e.rttvar = (3*e.rttvar + d) / 4
		e.srtt = (7*e.srtt + r) / 8
	}
	e.rto = e.clamp(e.srtt + 4*e.rttvar)
}

// timeout is how long to wait after transmission number try (1 = first).
// The engine keeps its rate under loss, so backoff is not congestion
// control here, only patience with a slow answer: the first retransmission
// waits as long as the probe, later ones twice as long. A lost probe thus
// costs a few round-trip timeouts at the end of a scan, not seconds.
func (e *rttEstimator) timeout(try int) time.Duration {
	d := e.rto
	if try >= 3 {
		d *= 2
	}
	return e.clamp(d)
}
