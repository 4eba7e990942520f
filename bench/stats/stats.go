// Package stats holds the measurements the bench harness accumulates per
// packet: a latency histogram and RFC 3550 interarrival jitter. Both are
// fixed-size values that never allocate when recording, and belong to one
// goroutine (the sink that records); they are merged after the run.
package stats

import (
	"math"
	"math/bits"
)

// histBuckets covers every uint64 value at 1/16 relative precision.
const histBuckets = 1024

// Histogram is a log-linear histogram of nanosecond durations, as
// HdrHistogram keeps them: exact below 32 ns, then 16 buckets per power of
// two (a bucket is at most 6.25% wide). The zero value is empty and ready.
// It is not safe for concurrent use.
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64
	max    uint64
}

func bucket(v uint64) int {
	l := bits.Len64(v)
	if l <= 5 {
		return int(v)
	}
	s := l - 5
	return 16*s + int(v>>s)
}

// bucketHigh is the largest value that falls in bucket i.
func bucketHigh(i int) uint64 {
	if i < 32 {
		return uint64(i)
	}
	s := i/16 - 1
	m := uint64(i - 16*s)
	return (m+1)<<s - 1
}

// Record adds one duration; negative ones count as zero.
func (h *Histogram) Record(nanos int64) {
	v := uint64(max(nanos, 0))
	h.counts[bucket(v)]++
	h.n++
	h.sum += float64(v)
	h.max = max(h.max, v)
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Mean is the mean recorded value in nanoseconds (0 when empty).
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Max is the largest recorded value.
func (h *Histogram) Max() uint64 { return h.max }

// Quantile returns the value at quantile q (0..1): the upper edge of the
// bucket holding it, capped at the maximum seen, so it never understates.
func (h *Histogram) Quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(bucketHigh(i), h.max)
		}
	}
	return h.max
}

// Point is one bucket of a histogram: values up to Upper nanoseconds, and
// how many fell there.
type Point struct {
	Upper uint64
	Count uint64
}

// Points returns the non-empty buckets in increasing order (for plots).
func (h *Histogram) Points() []Point {
	var out []Point
	for i, c := range h.counts {
		if c > 0 {
			out = append(out, Point{Upper: bucketHigh(i), Count: c})
		}
	}
	return out
}

// Jitter is the interarrival jitter estimator of RFC 3550 section 6.4.1
// (A.8), in nanoseconds rather than RTP timestamp units: J += (|D| - J)/16,
// where D is the difference between two consecutive packets' transit times.
// The zero value is ready.
type Jitter struct {
	transit int64
	j       float64
	started bool
}

// Add records a packet sent at sent and received at recv (same clock).
func (j *Jitter) Add(sent, recv int64) {
	t := recv - sent
	if j.started {
		d := t - j.transit
		if d < 0 {
			d = -d
		}
		j.j += (float64(d) - j.j) / 16
	}
	j.transit, j.started = t, true
}

// Nanos is the current jitter estimate.
func (j *Jitter) Nanos() float64 { return j.j }
