package history

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/strait-sbc/strait/controlplane/cdr"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/state/statetest"
)

// writer is a state Writer over st, closed when the test ends.
func writer(t *testing.T, st state.Store) *state.Writer {
	w := state.NewWriter(state.WriterConfig{Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { w.Close() })
	return w
}

func TestOwners(t *testing.T) {
	l := New(Config{Store: writer(t, state.NewMemory()), Users: func(u string) bool { return u == "carol" }})
	defer l.Close()
	for _, tc := range []struct {
		dir, caller, callee string
		want                []string
	}{
		{"browser-to-sip", "alice", "1001", []string{"alice"}},
		{"sip-to-browser", "+15551234", "bob", []string{"bob"}},
		{"browser-to-browser", "alice", "bob", []string{"alice", "bob"}},
		{"api", "alice", "1001", []string{"alice"}},
		{"echo", "alice", "echo", []string{"alice"}},
		{"sip-to-sip", "mallory", "1001", nil},             // made-up From: no history
		{"sip-to-sip", "carol", "1001", []string{"carol"}}, // a standalone user
		{"browser-to-browser", "alice", "alice", []string{"alice"}},
		{"api", "api", "1001", nil},
	} {
		if got := l.Owners(cdr.Record{Direction: tc.dir, Caller: tc.caller, Callee: tc.callee}); !slices.Equal(got, tc.want) {
			t.Errorf("%s %s->%s: %v, want %v", tc.dir, tc.caller, tc.callee, got, tc.want)
		}
	}
}

func rec(id, caller, callee string, end time.Time) cdr.Record {
	return cdr.Record{ID: id, Caller: caller, Callee: callee, Direction: "browser-to-browser", Start: end.Add(-time.Minute), End: end, Cause: 200, Reason: "caller bye"}
}

// Pages walk the history newest first without skipping or repeating an
// entry, ties in end time included; the history is bounded; it lives in
// the embedded store across a restart.
func TestPagesAndRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := state.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	const max = 20
	w := state.NewWriter(state.WriterConfig{Store: st})
	l := New(Config{Store: w, PerUser: max})
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	n := max + 15
	for i := 0; i < n; i++ {
		// Pairs of calls end at the same instant.
		l.Add(rec(fmt.Sprintf("c%03d", i), "alice", "bob", t0.Add(time.Duration(i/2)*time.Second)))
	}
	l.Add(rec("c000", "alice", "bob", t0)) // a record written twice (recovered)
	ctx := context.Background()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st, err = state.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l = New(Config{Store: writer(t, st), PerUser: max})
	defer l.Close()
	var ids []string
	var cur *Cursor
	for pages := 0; ; pages++ {
		if pages > max {
			t.Fatal("paging does not end")
		}
		page, next, err := l.Page(ctx, "bob", cur, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			ids = append(ids, e.ID)
		}
		if next == nil {
			break
		}
		c, err := ParseCursor(next.String())
		if err != nil || c.ID != next.ID || !c.End.Equal(next.End) {
			t.Fatalf("cursor %q: %v", next, err)
		}
		cur = &c
	}
	if len(ids) != max {
		t.Fatalf("%d entries, want the newest %d", len(ids), max)
	}
	for i, id := range ids {
		if want := fmt.Sprintf("c%03d", n-1-i); id != want {
			t.Fatalf("entry %d is %s, want %s (newest first, no gaps)", i, id, want)
		}
	}
	if page, _, _ := l.Page(ctx, "nobody", nil, 10); len(page) != 0 {
		t.Fatalf("nobody's history: %v", page)
	}
}

func TestParseCursor(t *testing.T) {
	for _, s := range []string{"", "x", "12", "12.", ".id", "-5.id", "1e9.id"} {
		if _, err := ParseCursor(s); err == nil {
			t.Errorf("ParseCursor(%q) accepted", s)
		}
	}
}

// A store that is down, where a user's history cannot be read, loses the
// record (counted) and never blocks Add.
func TestStoreDown(t *testing.T) {
	st := state.NewMemory()
	st.SetFailure(errors.New("down"))
	l := New(Config{Store: writer(t, st)})
	defer l.Close()
	l.Add(rec("c1", "alice", "bob", time.Now()))
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l.Dropped() != 2 {
		t.Fatalf("dropped %d, want 2 (alice's and bob's)", l.Dropped())
	}
}

// ParseCursor takes ?before= from the network: it never panics, and what
// it accepts prints back to itself.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"1765101600000000000.c001", "0.x", "", ".", "9999999999999999999.a", "12.a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			return
		}
		if back, err := ParseCursor(c.String()); err != nil || back.ID != c.ID || !back.End.Equal(c.End) {
			t.Fatalf("%q -> %+v -> %q: %v", s, c, c.String(), err)
		}
	})
}

// gatedStore holds the first read until released.
type gatedStore struct {
	state.Store
	entered chan struct{} // closed as the first read begins
	gate    chan struct{}
	gets    atomic.Int32
}

func (g *gatedStore) Get(ctx context.Context, kind state.Kind, key string) ([]byte, bool, error) {
	if g.gets.Add(1) == 1 {
		close(g.entered)
		<-g.gate
	}
	return g.Store.Get(ctx, kind, key)
}

// Records that queue up while a write is in progress are written
// together: one merge for all of them, each user's history read and
// encoded once, the result the same as one write per record.
func TestBatchedWrites(t *testing.T) {
	st := &gatedStore{Store: state.NewMemory(), entered: make(chan struct{}), gate: make(chan struct{})}
	l := New(Config{Store: writer(t, st), PerUser: 50})
	defer l.Close()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	l.Add(rec("c000", "alice", "bob", t0))
	select { // the writer is in its first write
	case <-st.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no write")
	}
	const n = 300
	for i := 1; i < n; i++ {
		l.Add(rec(fmt.Sprintf("c%03d", i), "alice", "bob", t0.Add(time.Duration(i)*time.Second)))
	}
	l.Add(rec("c299", "alice", "bob", t0.Add(299*time.Second))) // twice in one batch
	close(st.gate)
	ctx := context.Background()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := l.writes.Load(); got != 2 {
		t.Errorf("%d merges for %d records queued behind one, want 2", got, n)
	}
	for _, u := range []string{"alice", "bob"} {
		page, _, err := l.Page(ctx, u, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) != 50 {
			t.Fatalf("%s: %d entries, want 50", u, len(page))
		}
		for i, e := range page {
			if want := fmt.Sprintf("c%03d", n-1-i); e.ID != want {
				t.Fatalf("%s: entry %d is %s, want %s", u, i, e.ID, want)
			}
		}
	}
	if l.Dropped() != 0 {
		t.Fatalf("dropped %d", l.Dropped())
	}
}

// Records are gathered for a while and merged together; a read in the
// meantime merges them first, so a history always shows the calls that
// ended before it was read, whether or not the Writer has stored them yet.
func TestGatherAndReadYourWrites(t *testing.T) {
	st := state.NewMemory()
	w := state.NewWriter(state.WriterConfig{Store: st, FlushInterval: time.Hour})
	defer w.Close()
	l := New(Config{Store: w, Gather: time.Hour})
	defer l.Close()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for i := range 3 {
		l.Add(rec(fmt.Sprintf("c%d", i), "alice", "bob", t0.Add(time.Duration(i)*time.Second)))
	}
	page, _, err := l.Page(context.Background(), "alice", nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 3 || page[0].ID != "c2" {
		t.Fatalf("alice's history right after the calls: %v", page)
	}
	if got := l.writes.Load(); got != 1 {
		t.Fatalf("%d merges for 3 gathered records, want 1", got)
	}
	if _, ok, _ := st.Get(context.Background(), Kind, "alice"); ok {
		t.Fatal("the history reached the store before the Writer's flush")
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := st.Get(context.Background(), Kind, "alice"); !ok {
		t.Fatal("the history is not in the store after the Writer's flush")
	}
}

// A user's history this process wrote last is neither read back nor
// decoded for the next write while the store still holds it (Redis
// compares a digest); one another control plane rewrote meanwhile is read,
// and its calls kept.
func TestLastWriteNotReadBack(t *testing.T) {
	mr := miniredis.RunT(t)
	urls := map[string]string{"memory": "memory", "miniredis": "redis://" + mr.Addr() + "/0"}
	if _, err := exec.LookPath("redis-server"); err == nil || os.Getenv("CI") == "true" {
		urls["redis-server"] = statetest.StartRedis(t).URL
	}
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for name, spec := range urls {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st, err := state.Open(spec, "")
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			w := writer(t, st)
			l := New(Config{Store: w, Gather: -1})
			defer l.Close()
			add := func(l *Log, w *state.Writer, id string, i int) {
				t.Helper()
				l.Add(rec(id, "alice", "bob", t0.Add(time.Duration(i)*time.Second)))
				if err := l.Flush(ctx); err != nil {
					t.Fatal(err)
				}
				if err := w.Flush(ctx); err != nil { // in the store, no longer queued
					t.Fatal(err)
				}
			}
			add(l, w, "c1", 1)
			add(l, w, "c2", 2)
			if got := l.reused.Load(); got != 2 { // alice's and bob's
				t.Fatalf("%d histories reused after a second write, want 2 (alice, bob)", got)
			}
			// Another control plane on the same store ends a call of
			// alice's.
			w2 := writer(t, st)
			l2 := New(Config{Store: w2, Gather: -1})
			defer l2.Close()
			add(l2, w2, "c3", 3)
			add(l, w, "c4", 4)
			if got := l.reused.Load(); got != 2 {
				t.Fatalf("%d histories reused, want still 2: the peer's write must be read", got)
			}
			page, _, err := l.Page(ctx, "alice", nil, 10)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, e := range page {
				ids = append(ids, e.ID)
			}
			if !slices.Equal(ids, []string{"c4", "c3", "c2", "c1"}) {
				t.Fatalf("alice's history %v, want c4 c3 c2 c1 (the peer's call kept)", ids)
			}
		})
	}
}
