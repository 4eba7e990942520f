package gotrace

import (
	"bytes"
	"runtime"
	"runtime/trace"
	"sync/atomic"
	"testing"
	"time"
)

// spinLocked runs locked to its thread without blocking, as a packet
// worker under load, until stop is set: the runtime preempts it every
// 10 ms or so.
//
//go:noinline
func spinLocked(stop *atomic.Bool, n *uint64) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for !stop.Load() {
		*n = work(*n)
	}
}

//go:noinline
func work(n uint64) uint64 {
	for i := 0; i < 1000; i++ {
		n = n*6364136223846793005 + 1442695040888963407
	}
	return n
}

// TestReadFindsPreemptions traces a locked goroutine that never blocks
// and finds its preemptions, and nothing for a name no goroutine has.
func TestReadFindsPreemptions(t *testing.T) {
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Skipf("tracing refused: %v", err)
	}
	var stop atomic.Bool
	var n uint64
	done := make(chan struct{})
	go func() { spinLocked(&stop, &n); close(done) }()
	time.Sleep(150 * time.Millisecond) // sysmon preempts after 10 ms
	stop.Store(true)
	<-done
	trace.Stop()
	s, err := Read(bytes.NewReader(buf.Bytes()), "gotrace.TestReadFindsPreemptions.func")
	if err != nil {
		t.Fatal(err)
	}
	if s.Goroutines != 1 || s.Preemptions == 0 || len(s.Off) != s.Preemptions {
		t.Fatalf("%+v: want the spinning goroutine and its preemptions", s)
	}
	if s.Span <= 0 || s.PerSecond() <= 0 || s.Share() < 0 || s.Quantile(0.99) < s.Quantile(0.5) {
		t.Fatalf("span %v, %.1f/s, share %.4f, p50 %v, p99 %v", s.Span, s.PerSecond(), s.Share(), s.Quantile(0.5), s.Quantile(0.99))
	}
	t.Logf("%d preemptions in %v (%.0f/s), off p50 %v p99 %v, share %.3f%%", s.Preemptions, s.Span, s.PerSecond(),
		s.Quantile(0.5), s.Quantile(0.99), 100*s.Share())
	none, err := Read(bytes.NewReader(buf.Bytes()), "no.such.function")
	if err != nil || none.Goroutines != 0 || none.Preemptions != 0 {
		t.Fatalf("%+v, %v: want nothing", none, err)
	}
	if _, err := Read(bytes.NewReader([]byte("not a trace")), "x"); err == nil {
		t.Fatal("garbage read as a trace")
	}
}
