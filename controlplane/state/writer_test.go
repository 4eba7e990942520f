package state

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

func osStat(path string) (os.FileMode, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Mode().Perm(), nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// countingStore counts Apply calls and records.
type countingStore struct {
	*Memory
	applies, records atomic.Int64
}

func (c *countingStore) Apply(ctx context.Context, ch []Change) error {
	err := c.Memory.Apply(ctx, ch)
	if err == nil {
		c.applies.Add(1)
		c.records.Add(int64(len(ch)))
	}
	return err
}

func TestWriterBatchesAndKeepsTheLatest(t *testing.T) {
	cs := &countingStore{Memory: NewMemory()}
	w := NewWriter(WriterConfig{Store: cs, FlushInterval: 50 * time.Millisecond, Log: quiet()})
	defer w.Close()
	for i := range 100 {
		w.Put(Calls, fmt.Sprint(i%10), []byte(fmt.Sprint(i)))
	}
	w.Delete(Calls, "0")
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	m, _ := cs.Load(context.Background(), Calls)
	if len(m) != 9 || string(m["9"]) != "99" {
		t.Fatalf("stored %q: want keys 1..9 with their last values", m)
	}
	if cs.records.Load() > 10 || cs.applies.Load() > 2 {
		t.Fatalf("%d records in %d writes for 101 changes to 10 keys: want at most 10 in 2", cs.records.Load(), cs.applies.Load())
	}
}

func TestWriterDownAndBack(t *testing.T) {
	m := NewMemory()
	var ups []bool
	health := make(chan bool, 8)
	w := NewWriter(WriterConfig{Store: m, FlushInterval: 5 * time.Millisecond, PingInterval: 20 * time.Millisecond, Log: quiet(),
		OnHealth: func(up bool) { health <- up }})
	defer w.Close()
	ups = append(ups, <-health)
	m.SetFailure(errors.New("connection refused"))
	w.Put(Calls, "a", []byte("1"))
	ups = append(ups, <-health)
	if w.Up() {
		t.Fatal("Up with a failing store")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if err := w.Flush(ctx); err == nil {
		t.Fatal("Flush returned nil while the store is down")
	}
	cancel()
	if w.Pending() != 1 {
		t.Fatalf("pending %d, want the change kept", w.Pending())
	}
	m.SetFailure(nil)
	ups = append(ups, <-health)
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := m.Get(context.Background(), Calls, "a"); !ok || string(v) != "1" {
		t.Fatal("the change made while the store was down was not written when it came back")
	}
	if fmt.Sprint(ups) != "[true false true]" {
		t.Fatalf("health %v, want [true false true]", ups)
	}
}

func TestWriterNoticesAnOutageWhileIdle(t *testing.T) {
	m := NewMemory()
	w := NewWriter(WriterConfig{Store: m, PingInterval: 10 * time.Millisecond, Log: quiet()})
	defer w.Close()
	m.SetFailure(errors.New("down"))
	deadline := time.Now().Add(5 * time.Second)
	for w.Up() {
		if time.Now().After(deadline) {
			t.Fatal("an idle writer never noticed the store was down")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// blockingStore holds the first Apply until released.
type blockingStore struct {
	*Memory
	entered, gate chan struct{}
	applies       atomic.Int32
}

func (b *blockingStore) Apply(ctx context.Context, ch []Change) error {
	if b.applies.Add(1) == 1 {
		close(b.entered)
		<-b.gate
	}
	return b.Memory.Apply(ctx, ch)
}

// Get answers with this process's last write: queued, being written (the
// store does not have it yet), then stored; a queued delete reads as
// absent.
func TestWriterGetReadsItsOwnWrites(t *testing.T) {
	bs := &blockingStore{Memory: NewMemory(), entered: make(chan struct{}), gate: make(chan struct{})}
	ctx := context.Background()
	bs.Memory.Apply(ctx, []Change{{Kind: Calls, Key: "old", Value: []byte("stored")}})
	w := NewWriter(WriterConfig{Store: bs, FlushInterval: time.Millisecond, Log: quiet()})
	defer w.Close()
	get := func(key string) string {
		t.Helper()
		v, ok, err := w.Get(ctx, Calls, key)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return "<none>"
		}
		return string(v)
	}
	if got := get("old"); got != "stored" {
		t.Fatalf("stored record read as %q", got)
	}
	w.Put(Calls, "a", []byte("1"))
	w.Delete(Calls, "old")
	select { // the write of a=1 and old's delete is in progress
	case <-bs.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no write")
	}
	if got, _, _ := bs.Memory.Get(ctx, Calls, "a"); got != nil {
		t.Fatal("the store has the record before its write")
	}
	if got := get("a"); got != "1" {
		t.Fatalf("record being written read as %q", got)
	}
	if got := get("old"); got != "<none>" {
		t.Fatalf("record being deleted read as %q", got)
	}
	w.Put(Calls, "a", []byte("2")) // queued behind the write in progress
	if got := get("a"); got != "2" {
		t.Fatalf("queued record read as %q", got)
	}
	close(bs.gate)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := get("a"); got != "2" {
		t.Fatalf("written record read as %q", got)
	}
	if v, _, _ := bs.Memory.Get(ctx, Calls, "a"); string(v) != "2" {
		t.Fatalf("store holds %q", v)
	}
}

// A generation carries the time it was made; an earlier version's (random
// text only) has none.
func TestGenerationTime(t *testing.T) {
	at := time.UnixMilli(1_765_000_000_123)
	if got := GenerationTime(newGeneration(at)); !got.Equal(at) {
		t.Fatalf("GenerationTime = %v, want %v", got, at)
	}
	for _, g := range []string{"", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "x.y", "-5.abc", "12"} {
		if got := GenerationTime(g); !got.IsZero() {
			t.Errorf("GenerationTime(%q) = %v, want zero", g, got)
		}
	}
}

// Writer.Advance on Redis (miniredis: its Lua) refuses with ErrStoreLost
// once the store's generation is gone or another, and the Writer then
// checks the store at once (OnLost) without waiting for its ping.
func TestWriterAdvanceSeesLoss(t *testing.T) {
	mr := miniredis.RunT(t)
	st, err := OpenRedis("redis://" + mr.Addr() + "/0")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w := NewWriter(WriterConfig{Store: st, PingInterval: time.Hour})
	defer w.Close()
	lost := make(chan struct{}, 1)
	w.OnLost(func() { lost <- struct{}{} })
	ctx := context.Background()
	if fresh, err := w.Advance(ctx, Nonces, "n", 1, time.Minute); err != nil || !fresh {
		t.Fatalf("first: %v %v", fresh, err)
	}
	if fresh, err := w.Advance(ctx, Nonces, "n", 1, time.Minute); err != nil || fresh {
		t.Fatalf("again: %v %v", fresh, err)
	}
	mr.FlushAll() // the store comes back empty
	if _, err := w.Advance(ctx, Nonces, "n", 1, time.Minute); !errors.Is(err, ErrStoreLost) {
		t.Fatalf("after the loss: %v, want ErrStoreLost", err)
	}
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("the Writer did not check the store at once")
	}
	if fresh, err := w.Advance(ctx, Nonces, "n", 1, time.Minute); err != nil || !fresh {
		t.Fatalf("with the new generation: %v %v", fresh, err)
	}
}
