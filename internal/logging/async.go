package logging

import (
	"bytes"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultAsyncBuffer is how many bytes of log lines an AsyncWriter holds
// while its writer is slow (about 5 000 lines of a call's size).
const DefaultAsyncBuffer = 1 << 20

// AsyncWriter hands log lines to a writer of its own goroutine, so that a
// log reader that falls behind (a pipe to journald or a container runtime
// whose buffer is full, a slow disk) never holds up the goroutines that
// log: at a thousand calls a second a blocked stderr would stall every
// call behind slog's handler lock. Lines that arrive while the goroutine
// writes are written together, in one system call, in their order.
//
// What the writer cannot take in time is bounded (the buffer's size):
// lines past it are dropped and counted, and a line in the log's format
// says how many, once the writer catches up ("log lines dropped"), as
// journald and rsyslog do with their rate limits. A crash loses at most
// the lines not yet written, which the goroutine writes as soon as they
// arrive; the runtime's own crash report goes to the file directly.
//
// Write is safe for concurrent use (slog's handlers call it once per
// line). Close writes what is held and stops the goroutine; lines written
// after Close go straight to the writer.
type AsyncWriter struct {
	// Frozen after NewAsyncWriter.
	w        io.Writer
	max      int
	dropLine func(n uint64) []byte
	wake     chan struct{} // capacity 1: "lines are waiting"
	stop     chan struct{} // closed by Close
	done     chan struct{} // closed when the goroutine has returned

	mu sync.Mutex // guards the fields below, and the writer once closed
	// buf holds the lines waiting, in order; spare is the goroutine's
	// last written buffer, reused as the next buf.
	buf, spare []byte
	dropped    uint64 // lines dropped since the last notice
	closed     bool

	total     atomic.Uint64 // lines dropped since the start
	closeOnce sync.Once
}

// NewAsyncWriter starts an AsyncWriter on w holding at most max bytes
// (0: DefaultAsyncBuffer); format ("text" or "json") is that of the
// lines, for the line that reports drops.
func NewAsyncWriter(w io.Writer, format string, max int) *AsyncWriter {
	if max <= 0 {
		max = DefaultAsyncBuffer
	}
	a := &AsyncWriter{w: w, max: max, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	a.dropLine = func(n uint64) []byte {
		var b bytes.Buffer
		var h slog.Handler = slog.NewTextHandler(&b, nil)
		if format == "json" {
			h = slog.NewJSONHandler(&b, nil)
		}
		slog.New(h).Warn("log lines dropped: the log's reader fell behind", "dropped", n)
		return b.Bytes()
	}
	go a.run()
	return a
}

// Write queues p (one log line) and returns at once; p is copied.
func (a *AsyncWriter) Write(p []byte) (int, error) {
	a.mu.Lock()
	if a.closed {
		defer a.mu.Unlock()
		return a.w.Write(p)
	}
	if len(a.buf)+len(p) > a.max {
		a.dropped++
		a.mu.Unlock()
		a.total.Add(1)
		return len(p), nil
	}
	a.buf = append(a.buf, p...)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default: // the goroutine is woken already
	}
	return len(p), nil
}

// Dropped is how many lines were dropped since the start.
func (a *AsyncWriter) Dropped() uint64 { return a.total.Load() }

// Close writes the lines held and stops the goroutine; it returns once
// they are written (or after 5 s, if the writer is stuck).
func (a *AsyncWriter) Close() error {
	a.closeOnce.Do(func() { close(a.stop) })
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
	}
	return nil
}

// run is the goroutine that writes.
func (a *AsyncWriter) run() {
	defer close(a.done)
	for {
		select {
		case <-a.wake:
			a.flush(false)
		case <-a.stop:
			a.flush(true)
			return
		}
	}
}

// flush writes the lines held, and the notice of lines dropped after
// them. The last flush (final) writes under mu, having closed the writer
// to the queue, so that lines written after Close come after it.
func (a *AsyncWriter) flush(final bool) {
	a.mu.Lock()
	out, n := a.buf, a.dropped
	a.buf, a.spare, a.dropped = a.spare, nil, 0
	if final {
		a.closed = true
		defer a.mu.Unlock()
	} else {
		a.mu.Unlock()
	}
	if n > 0 {
		out = append(out, a.dropLine(n)...)
	}
	if len(out) > 0 {
		a.w.Write(out) // nowhere to report a failure to: the log is it
	}
	if final {
		return
	}
	if cap(out) > 4*a.max {
		out = nil // a burst's buffer is not kept
	}
	a.mu.Lock()
	if a.buf == nil {
		a.buf = out[:0]
	} else {
		a.spare = out[:0]
	}
	a.mu.Unlock()
}
