package quality

// Sample is what one interval of a call measured in one direction.
type Sample struct {
	// UnixNano is when the interval ended; Seconds how long it was.
	UnixNano int64
	Seconds  float64
	// Loss is the fraction of packets lost in the interval, Jitter the
	// interarrival jitter in seconds, MOS the estimated score.
	Loss, Jitter, MOS float64
	// RTT is the round-trip time in seconds, valid when HasRTT.
	RTT    float64
	HasRTT bool
}

// Stat is the minimum, mean and maximum of a figure over a call's
// intervals. N counts them; the zero value has seen none.
type Stat struct {
	Min, Max, Sum float64
	N             int
}

// Add accounts for one value.
func (s *Stat) Add(v float64) {
	if s.N == 0 || v < s.Min {
		s.Min = v
	}
	if s.N == 0 || v > s.Max {
		s.Max = v
	}
	s.Sum += v
	s.N++
}

// Avg is the mean, 0 when empty.
func (s *Stat) Avg() float64 {
	if s.N == 0 {
		return 0
	}
	return s.Sum / float64(s.N)
}

// MaxSeries bounds a Log's series: when it fills, neighbouring points are
// merged two by two and each later point covers twice as many intervals,
// so a call of any length keeps between MaxSeries/2 and MaxSeries points
// spread over all of it.
const MaxSeries = 64

// Log accumulates the samples of one direction of one stream over a call:
// min/avg/max of each figure and a bounded per-interval series. It is not
// safe for concurrent use; the zero value is empty.
type Log struct {
	Loss, Jitter, RTT, MOS Stat
	// Last is the latest sample.
	Last Sample
	// Series holds the call's intervals, each point the mean of stride
	// consecutive samples (see MaxSeries).
	Series  []Sample
	stride  int
	pending Sample
	pendN   int
	pendRTT int
}

// Add accounts for one interval's sample.
func (l *Log) Add(s Sample) {
	l.Last = s
	l.Loss.Add(s.Loss)
	l.Jitter.Add(s.Jitter)
	l.MOS.Add(s.MOS)
	if s.HasRTT {
		l.RTT.Add(s.RTT)
	}
	if l.stride == 0 {
		l.stride = 1
	}
	l.pending = merge(l.pending, l.pendN, l.pendRTT, s)
	l.pendN++
	if s.HasRTT {
		l.pendRTT++
	}
	if l.pendN < l.stride {
		return
	}
	if len(l.Series) == MaxSeries {
		for i := range MaxSeries / 2 {
			a, b := l.Series[2*i], l.Series[2*i+1]
			na := 0
			if a.HasRTT {
				na = 1
			}
			l.Series[i] = merge(a, 1, na, b)
		}
		l.Series = l.Series[:MaxSeries/2]
		l.stride *= 2
	}
	l.Series = append(l.Series, l.pending)
	l.pending, l.pendN, l.pendRTT = Sample{}, 0, 0
}

// merge folds sample s into acc, the mean of n samples of which nRTT had a
// round-trip time. The result ends when s ends and spans both.
func merge(acc Sample, n, nRTT int, s Sample) Sample {
	if n == 0 {
		return s
	}
	w := float64(n)
	out := Sample{
		UnixNano: s.UnixNano,
		Seconds:  acc.Seconds + s.Seconds,
		Loss:     (acc.Loss*w + s.Loss) / (w + 1),
		Jitter:   (acc.Jitter*w + s.Jitter) / (w + 1),
		MOS:      (acc.MOS*w + s.MOS) / (w + 1),
		RTT:      acc.RTT,
		HasRTT:   acc.HasRTT || s.HasRTT,
	}
	if s.HasRTT {
		out.RTT = (acc.RTT*float64(nRTT) + s.RTT) / float64(nRTT+1)
	}
	return out
}
