// Package gotrace reads a Go execution trace (runtime/trace, as a node's
// /debug/pprof/trace serves it) for what the Go scheduler costs a node's
// packet workers: how often the runtime preempted them and how long each
// preemption kept them off their thread.
//
// A packet worker runs locked to its OS thread (io_uring is single-issuer)
// and never blocks while datagrams keep coming, so the runtime's sysmon
// preempts it after 10 ms on the same scheduler tick. For a locked
// goroutine a preemption is a hand-off through another thread: the worker
// goes to the global run queue, its thread parks and gives up its P, some
// other thread takes the worker off the queue and hands the P back, and the
// worker's thread wakes again: two thread wake-ups, each waiting for a CPU
// on a busy machine, while datagrams queue in the kernel.
package gotrace

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// Stalls is what the runtime's preemptions cost the goroutines a trace
// was read for.
type Stalls struct {
	// Goroutines is how many matching goroutines were seen preempted or
	// running.
	Goroutines int
	// Span is the trace's duration.
	Span time.Duration
	// Preemptions counts the matching goroutines' preemptions ("preempted"
	// Running -> Runnable) that ran again within the trace.
	Preemptions int
	// Off holds how long each such preemption kept its goroutine from
	// running (Runnable -> Running), sorted.
	Off []time.Duration
}

// Quantile returns the q-quantile of Off (0 when empty).
func (s *Stalls) Quantile(q float64) time.Duration {
	if len(s.Off) == 0 {
		return 0
	}
	i := int(q * float64(len(s.Off)))
	return s.Off[min(i, len(s.Off)-1)]
}

// Share is the matching goroutines' time off after preemptions over their
// total time in the trace: the share of a worker's time the hand-offs took.
func (s *Stalls) Share() float64 {
	if s.Goroutines == 0 || s.Span <= 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range s.Off {
		sum += d
	}
	return sum.Seconds() / (s.Span.Seconds() * float64(s.Goroutines))
}

// PerSecond is preemptions per second per matching goroutine.
func (s *Stalls) PerSecond() float64 {
	if s.Goroutines == 0 || s.Span <= 0 {
		return 0
	}
	return float64(s.Preemptions) / s.Span.Seconds() / float64(s.Goroutines)
}

// Read reads a trace and measures the preemptions of the goroutines with
// a frame whose function name contains fn in a stack the trace records for
// them (at a preemption, a block, a syscall).
func Read(r io.Reader, fn string) (*Stalls, error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("gotrace: %w", err)
	}
	type state struct {
		match     bool
		preempted bool
		since     trace.Time
	}
	gs := map[trace.GoID]*state{}
	var off []time.Duration
	var first, last trace.Time
	for {
		ev, err := tr.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("gotrace: %w", err)
		}
		if first == 0 {
			first = ev.Time()
		}
		last = ev.Time()
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		id := st.Resource.Goroutine()
		g := gs[id]
		if g == nil {
			g = &state{}
			gs[id] = g
		}
		if !g.match && (hasFrame(st.Stack, fn) || hasFrame(ev.Stack(), fn) && ev.Goroutine() == id) {
			g.match = true
		}
		from, to := st.Goroutine()
		switch {
		case from == trace.GoRunning && to == trace.GoRunnable && st.Reason == "preempted":
			g.preempted, g.since = true, ev.Time()
		case to == trace.GoRunning:
			if g.preempted && g.match {
				off = append(off, time.Duration(ev.Time()-g.since))
			}
			g.preempted = false
		default:
			g.preempted = false
		}
	}
	s := &Stalls{Span: time.Duration(last - first)}
	for _, g := range gs {
		if g.match {
			s.Goroutines++
		}
	}
	s.Off = off
	s.Preemptions = len(off)
	slices.Sort(s.Off)
	return s, nil
}

func hasFrame(s trace.Stack, fn string) bool {
	for f := range s.Frames() {
		if strings.Contains(f.Func, fn) {
			return true
		}
	}
	return false
}
