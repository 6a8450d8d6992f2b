package monitor

import (
	"os"
	"runtime/debug"
	"sync"
)

// idleGCPercent is the garbage collector's target (GOGC) while no scan
// runs. Between scans the daemon's heap is what it keeps (the latest
// snapshots, the detections) plus what scrapes and page views allocate;
// at Go's default of 100 that garbage could grow to the size of the live
// heap before a collection, so an idle daemon watching an estate would sit
// at twice its data. At 25 it stays within a quarter, for a collection
// every few scrapes of a heap of tens of MB (milliseconds of CPU). Scans
// run at the default (or GOGC's value), where the collector costs less of
// a scan's time.
const idleGCPercent = 25

// gcTuner switches the collector's target between a scan's and idle: the
// first scan to start sets the busy target, the last to end the idle one.
// A nil *gcTuner does nothing (tests, and a GOGC set by the operator,
// which wins).
type gcTuner struct {
	mu         sync.Mutex
	running    int
	busy, idle int
}

// newGCTuner returns a tuner that starts the daemon idle, or nil when
// GOGC is set.
func newGCTuner() *gcTuner {
	if _, set := os.LookupEnv("GOGC"); set {
		return nil
	}
	g := &gcTuner{idle: idleGCPercent}
	g.busy = debug.SetGCPercent(g.idle)
	return g
}

func (g *gcTuner) scanStarted() {
	if g == nil {
		return
	}
	g.mu.Lock()
	if g.running == 0 {
		debug.SetGCPercent(g.busy)
	}
	g.running++
	g.mu.Unlock()
}

func (g *gcTuner) scanEnded() {
	if g == nil {
		return
	}
	g.mu.Lock()
	if g.running--; g.running == 0 {
		debug.SetGCPercent(g.idle)
	}
	g.mu.Unlock()
}

// restore puts back the target the daemon started with.
func (g *gcTuner) restore() {
	if g == nil {
		return
	}
	g.mu.Lock()
	debug.SetGCPercent(g.busy)
	g.mu.Unlock()
}
