package relay

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// The time a worker holds a datagram: from the moment its round is handed
// to the worker (its Loop's wait returned) to the moment its send goes to
// the kernel: with the next wait, once the round's work is done (and
// whatever the worker does between rounds: table changes), or earlier in
// a round longer than maxHold, which sends what it has every holdCheck
// datagrams. Every datagram sent at one time is counted with that time,
// an upper bound of its own: the first one waits for the others handled
// before the send (the batching delay). This is the
// relay's own share of a packet's latency through it; what the harness
// measures end to end adds the time a datagram waited in its socket for
// the worker to be scheduled, and the kernel's delivery both ways.

// HoldBuckets is the number of finite buckets of the hold histogram: the
// i-th (from 0) holds durations of at most 2^i µs, up to about 1 s.
const HoldBuckets = 21

// holdHist is one worker's hold histogram. Written by the worker only (one
// add per round), read by scrapes; padded so that two workers' histograms
// never share a cache line.
type holdHist struct {
	_      [64]byte
	counts [HoldBuckets + 1]atomic.Uint64 // the last one: longer than every bucket
	sumNs  atomic.Uint64
	_      [64]byte
}

// add counts n datagrams held for d.
func (h *holdHist) add(d time.Duration, n int) {
	if n <= 0 {
		return
	}
	us := uint64(max(d, 0) / time.Microsecond)
	i := min(bits.Len64(us), HoldBuckets) // us < 2^i: at most 2^i µs
	h.counts[i].Add(uint64(n))
	h.sumNs.Add(uint64(max(d, 0)) * uint64(n))
}

// HoldStats is the node's hold histogram, summed over workers: Counts[i]
// datagrams were held at most 2^i µs and more than 2^(i-1) (the last
// entry: longer than 2^(HoldBuckets-1) µs), Sum their total hold.
type HoldStats struct {
	Counts [HoldBuckets + 1]uint64
	Sum    time.Duration
}

// HoldBound is bucket i's upper bound.
func HoldBound(i int) time.Duration { return time.Duration(1<<i) * time.Microsecond }

// HoldStats sums the workers' hold histograms.
func (e *Engine) HoldStats() HoldStats {
	var st HoldStats
	for _, w := range e.workers {
		for i := range st.Counts {
			st.Counts[i] += w.hold.counts[i].Load()
		}
		st.Sum += time.Duration(w.hold.sumNs.Load())
	}
	return st
}
