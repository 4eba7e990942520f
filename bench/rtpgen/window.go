package rtpgen

import (
	"time"

	"github.com/strait-sbc/strait/bench/stats"
)

// Window is what happened to the packets sent during a measurement window.
type Window struct {
	Start, End int64 // engine nanos
	// Sent and Received count packets whose send time is in the window
	// (Sent excludes what the harness's own sockets refused).
	Sent, Received uint64
	// SendDrops are packets the harness's sockets refused (the generator
	// outran its own socket buffers), in the window.
	SendDrops uint64
	// Mismatches are payloads that arrived altered, over the whole run,
	// plus packets at the wrong socket or naming no flow.
	Mismatches uint64
	// Duplicates over the whole run.
	Duplicates uint64
	// SRTPFailures are packets the harness could not decrypt (whole run).
	SRTPFailures uint64
	// Latency of the window's packets, send to receive.
	Latency stats.Histogram
	// JitterNanos is the mean over flows of RFC 3550 jitter.
	JitterNanos float64
	// Starved counts flows that sent in the window and received nothing.
	Starved int
}

// Duration is the window's length.
func (w *Window) Duration() time.Duration { return time.Duration(w.End - w.Start) }

// StartWindow opens a measurement window now; counters of an earlier
// window are reset.
func (e *Engine) StartWindow() int64 {
	e.genMu.Lock()
	e.sinkMu.Lock()
	for i := 1; i <= int(e.nextID.Load()) && i < MaxFlows; i++ {
		if f := e.flows[i].Load(); f != nil {
			f.sentWin, f.recvWin = 0, 0
		}
	}
	e.sendDropWin = 0
	e.hist = stats.Histogram{}
	now := e.Now()
	e.winEnd.Store(0)
	e.winStart.Store(now)
	e.sinkMu.Unlock()
	e.genMu.Unlock()
	return now
}

// EndWindow closes the window now. Call Collect after the packets in
// flight had time to arrive.
func (e *Engine) EndWindow() int64 {
	now := e.Now()
	e.winEnd.Store(now)
	return now
}

// Collect returns the window's figures.
func (e *Engine) Collect() Window {
	e.genMu.Lock()
	e.sinkMu.Lock()
	defer e.sinkMu.Unlock()
	defer e.genMu.Unlock()
	w := Window{Start: e.winStart.Load(), End: e.winEnd.Load(), SendDrops: e.sendDropWin,
		Mismatches: e.strays, SRTPFailures: e.srtpFail, Latency: e.hist}
	var jit float64
	var nj int
	for i := 1; i <= int(e.nextID.Load()) && i < MaxFlows; i++ {
		f := e.flows[i].Load()
		if f == nil {
			continue
		}
		w.Sent += f.sentWin
		w.Received += f.recvWin
		w.Mismatches += f.mismatches
		w.Duplicates += f.dups
		if f.sentWin > 0 && f.recvWin == 0 {
			w.Starved++
		}
		if f.recvWin > 1 {
			jit += f.jitter.Nanos()
			nj++
		}
	}
	if nj > 0 {
		w.JitterNanos = jit / float64(nj)
	}
	return w
}

// Mismatches counts payload mismatches so far, over every flow ever
// registered (also removed ones: they are kept in the total).
func (e *Engine) Mismatches() uint64 {
	e.sinkMu.Lock()
	defer e.sinkMu.Unlock()
	n := e.strays
	for i := 1; i <= int(e.nextID.Load()) && i < MaxFlows; i++ {
		if f := e.flows[i].Load(); f != nil {
			n += f.mismatches
		}
	}
	return n
}
