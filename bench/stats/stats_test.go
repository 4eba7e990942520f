package stats

import (
	"math/rand/v2"
	"sort"
	"testing"
)

func TestBuckets(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<20; v++ {
		b := bucket(v)
		if b < prev {
			t.Fatalf("bucket(%d) = %d < %d", v, b, prev)
		}
		if v > bucketHigh(b) || (b > 0 && v <= bucketHigh(b-1)) {
			t.Fatalf("value %d in bucket %d [%d, %d]", v, b, bucketHigh(b-1)+1, bucketHigh(b))
		}
		prev = b
	}
	if b := bucket(^uint64(0)); b >= histBuckets {
		t.Fatalf("max value in bucket %d", b)
	}
}

func TestQuantileWithinPrecision(t *testing.T) {
	var h Histogram
	vals := make([]int64, 10000)
	for i := range vals {
		vals[i] = int64(rand.ExpFloat64() * 200000)
		h.Record(vals[i])
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := float64(vals[int(q*float64(len(vals)))-1])
		got := float64(h.Quantile(q))
		if got < exact || got > exact*1.07+1 {
			t.Errorf("q%.3f = %.0f, exact %.0f", q, got, exact)
		}
	}
	if h.Quantile(1) != h.Max() {
		t.Errorf("q1 %d != max %d", h.Quantile(1), h.Max())
	}
	var m Histogram
	m.Merge(&h)
	m.Merge(&h)
	if m.Count() != 2*h.Count() || m.Quantile(0.5) != h.Quantile(0.5) {
		t.Error("merge changed the distribution")
	}
}

func TestJitter(t *testing.T) {
	var j Jitter
	for i := int64(0); i < 1000; i++ {
		j.Add(i*20e6, i*20e6+1e6) // constant transit: no jitter
	}
	if j.Nanos() != 0 {
		t.Fatalf("constant delay gave jitter %v", j.Nanos())
	}
	for i := int64(0); i < 1000; i++ {
		d := int64(0)
		if i%2 == 1 {
			d = 1e6
		}
		j.Add(i*20e6, i*20e6+d)
	}
	if got := j.Nanos(); got < 0.9e6 || got > 1.1e6 {
		t.Fatalf("alternating 1 ms delay: jitter %v, want about 1 ms", got)
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	h := new(Histogram)
	if n := testing.AllocsPerRun(100, func() { h.Record(12345) }); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}
