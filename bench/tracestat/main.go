// Command tracestat reads a Go runtime trace of strait (strait-bench calls
// --trace FILE) and prints what the garbage collector's mark phases cost
// the goroutines serving calls: how many phases, how long, what share of
// the traced time; how many Ps the collector's mark workers held while
// marking; and the scheduler latency (runnable to running) of every
// goroutine inside and outside a mark phase, and of the goroutines sipgo
// starts for each SIP request (created under its transaction layer's
// handleMessage). It is a module of its own so that golang.org/x/exp stays
// out of Strait's go.mod:
//
//	cd bench/tracestat && go run . FILE...
package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/exp/trace"
)

const markPhase = "GC concurrent mark phase"

// stats is what one trace gives.
type stats struct {
	first, last      trace.Time
	marks            []float64 // each mark phase's length, ms
	assistMs         float64   // mark assists, summed over goroutines
	gcWorkerMs       float64   // mark worker goroutines' running time
	latIn, latOut    []float64 // scheduler latency, ms, inside/outside a mark phase
	latReq           []float64 // the same, for request goroutines
	inMark           bool
	markStart        trace.Time
	runnableAt       map[trace.GoID]trace.Time
	runnableInMark   map[trace.GoID]bool
	runningAt        map[trace.GoID]trace.Time
	assistAt         map[trace.GoID]trace.Time
	request, gcWorks map[trace.GoID]bool
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tracestat TRACE...")
		os.Exit(2)
	}
	for _, name := range os.Args[1:] {
		s, err := read(name)
		if err != nil {
			fmt.Fprintf(os.Stderr, "tracestat: %s: %v\n", name, err)
			os.Exit(1)
		}
		s.print(name)
	}
}

func read(name string) (*stats, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		return nil, err
	}
	s := &stats{
		runnableAt: map[trace.GoID]trace.Time{}, runnableInMark: map[trace.GoID]bool{},
		runningAt: map[trace.GoID]trace.Time{}, assistAt: map[trace.GoID]trace.Time{},
		request: map[trace.GoID]bool{}, gcWorks: map[trace.GoID]bool{},
	}
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			return s, nil
		}
		if err != nil {
			return nil, err
		}
		s.event(ev)
	}
}

func has(st trace.Stack, fn string) bool {
	for fr := range st.Frames() {
		if strings.Contains(fr.Func, fn) {
			return true
		}
	}
	return false
}

func (s *stats) event(ev trace.Event) {
	t := ev.Time()
	if s.first == 0 {
		s.first = t
	}
	s.last = t
	switch ev.Kind() {
	case trace.EventRangeBegin, trace.EventRangeActive:
		// Active: under way as the trace, or one of its generations, starts.
		switch ev.Range().Name {
		case markPhase:
			if !s.inMark {
				s.inMark, s.markStart = true, t
			}
		case "GC mark assist":
			if _, ok := s.assistAt[ev.Goroutine()]; !ok {
				s.assistAt[ev.Goroutine()] = t
			}
		}
	case trace.EventRangeEnd:
		switch ev.Range().Name {
		case markPhase:
			if s.inMark {
				s.marks = append(s.marks, ms(t-s.markStart))
				s.inMark = false
			}
		case "GC mark assist":
			if a, ok := s.assistAt[ev.Goroutine()]; ok {
				s.assistMs += ms(t - a)
				delete(s.assistAt, ev.Goroutine())
			}
		}
	case trace.EventStateTransition:
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			return
		}
		g := st.Resource.Goroutine()
		from, to := st.Goroutine()
		if from == trace.GoNotExist && (has(st.Stack, "handleMessage") || has(ev.Stack(), "handleMessage")) {
			s.request[g] = true
		}
		if from == trace.GoRunning {
			if !s.gcWorks[g] && has(ev.Stack(), "gcBgMarkWorker") {
				s.gcWorks[g] = true
			}
			if at, ok := s.runningAt[g]; ok && s.gcWorks[g] {
				s.gcWorkerMs += ms(t - at)
			}
			delete(s.runningAt, g)
		}
		switch to {
		case trace.GoRunnable:
			s.runnableAt[g] = t
			s.runnableInMark[g] = s.inMark
		case trace.GoRunning:
			s.runningAt[g] = t
			if at, ok := s.runnableAt[g]; ok {
				d := ms(t - at)
				if s.runnableInMark[g] || s.inMark {
					s.latIn = append(s.latIn, d)
				} else {
					s.latOut = append(s.latOut, d)
				}
				if s.request[g] {
					s.latReq = append(s.latReq, d)
				}
			}
			delete(s.runnableAt, g)
		default:
			delete(s.runnableAt, g)
		}
	}
}

func ms(d trace.Time) float64 { return float64(d) / 1e6 }

// pct is the p-quantile of v (sorted in place), 0 for none.
func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[int(p*float64(len(v)-1))]
}

func (s *stats) print(name string) {
	total := ms(s.last - s.first)
	var marked float64
	for _, m := range s.marks {
		marked += m
	}
	share, ps := 0.0, 0.0
	if total > 0 {
		share = 100 * marked / total
	}
	if marked > 0 {
		ps = s.gcWorkerMs / marked
	}
	fmt.Printf("%s: %.0f ms traced\n", name, total)
	fmt.Printf("  mark phases: %d, %.0f ms in all (%.1f%% of the time), each p50 %.0f ms, max %.0f ms; mark assists %.0f ms\n",
		len(s.marks), marked, share, pct(s.marks, .5), pct(s.marks, 1), s.assistMs)
	fmt.Printf("  mark workers held %.2f Ps on average while marking (%.0f ms)\n", ps, s.gcWorkerMs)
	fmt.Printf("  scheduler latency, inside mark phases: n=%d p50 %.3f ms p99 %.2f ms; outside: n=%d p50 %.3f ms p99 %.2f ms\n",
		len(s.latIn), pct(s.latIn, .5), pct(s.latIn, .99), len(s.latOut), pct(s.latOut, .5), pct(s.latOut, .99))
	fmt.Printf("  scheduler latency of SIP request goroutines: n=%d p50 %.3f ms p99 %.2f ms\n",
		len(s.latReq), pct(s.latReq, .5), pct(s.latReq, .99))
}
