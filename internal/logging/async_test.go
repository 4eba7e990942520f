package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strait-sbc/strait/internal/racecheck"
)

// lockedBuffer is a bytes.Buffer the test reads while the writer's
// goroutine writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Lines from many goroutines all arrive, each whole, each goroutine's in
// its order; Close returns once they are written.
func TestAsyncWriterKeepsEveryLine(t *testing.T) {
	var out lockedBuffer
	a := NewAsyncWriter(&out, "text", 0)
	log, _ := New(a, "text", nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				log.Info("line", "g", g, "i", i)
			}
		}()
	}
	wg.Wait()
	a.Close()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2000 {
		t.Fatalf("%d lines, want 2000", len(lines))
	}
	next := map[string]int{}
	for _, l := range lines {
		f := strings.Fields(l)
		g := strings.TrimPrefix(f[len(f)-2], "g=")
		i, err := strconv.Atoi(strings.TrimPrefix(f[len(f)-1], "i="))
		if err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if i != next[g] {
			t.Fatalf("goroutine %s: line %d, want %d", g, i, next[g])
		}
		next[g]++
	}
	if a.Dropped() != 0 {
		t.Errorf("%d dropped", a.Dropped())
	}
	// After Close, straight through.
	log.Info("after close")
	if !strings.Contains(out.String(), "after close") {
		t.Error("a line after Close was not written")
	}
}

// blockedWriter blocks every Write until release is closed.
type blockedWriter struct {
	release chan struct{}
	entered chan struct{}
	once    sync.Once
	out     lockedBuffer
}

func (b *blockedWriter) Write(p []byte) (int, error) {
	b.once.Do(func() { close(b.entered) })
	<-b.release
	return b.out.Write(p)
}

// A writer that does not take the lines does not hold up the goroutines
// that log: past the buffer, lines are dropped and counted, and once the
// writer catches up a line in the log's format says how many.
func TestAsyncWriterDropsWhenStuck(t *testing.T) {
	for _, format := range Formats {
		w := &blockedWriter{release: make(chan struct{}), entered: make(chan struct{})}
		a := NewAsyncWriter(w, format, 4096)
		log, _ := New(a, format, nil)
		log.Info("first") // taken by the goroutine, which then blocks
		<-w.entered
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range 1000 {
				log.Info("while stuck", "i", i)
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: logging blocked behind a stuck writer", format)
		}
		dropped := a.Dropped()
		if dropped == 0 || dropped >= 1000 {
			t.Fatalf("%s: %d of 1000 lines dropped with a 4 kB buffer", format, dropped)
		}
		close(w.release)
		a.Close()
		got := w.out.String()
		lines := strings.Split(strings.TrimSpace(got), "\n")
		if kept := len(lines) - 2; uint64(kept)+dropped != 1000 { // "first" and the notice
			t.Errorf("%s: %d lines kept + %d dropped, want 1000", format, kept, dropped)
		}
		last := lines[len(lines)-1]
		if !strings.Contains(last, "log lines dropped") || !strings.Contains(last, fmt.Sprint(dropped)) {
			t.Errorf("%s: last line %q does not report %d dropped", format, last, dropped)
		}
		if format == "json" {
			var m map[string]any
			if err := json.Unmarshal([]byte(last), &m); err != nil || m["dropped"] != float64(dropped) {
				t.Errorf("json: notice %q: %v", last, err)
			}
		}
	}
}

// Logging into an AsyncWriter allocates nothing per line once its buffers
// have grown (the copy goes into a reused buffer).
func TestAsyncWriterAllocs(t *testing.T) {
	if racecheck.Enabled {
		t.Skip("the race detector's instrumentation allocates (test.sh runs this without it)")
	}
	var out lockedBuffer
	a := NewAsyncWriter(&out, "text", 0)
	defer a.Close()
	line := []byte("time=2026-12-07T16:55:35.337Z level=INFO msg=\"call ended\" call=cImS8kE53CsyrLwrqCAx\n")
	for range 1000 {
		a.Write(line)
	}
	if n := testing.AllocsPerRun(1000, func() { a.Write(line) }); n > 0.01 {
		t.Errorf("%.2f allocations per line", n)
	}
}
