package presence

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/state"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		status, note string
		ok           bool
	}{
		{"available", "", true},
		{"dnd", "in a meeting until 3", true},
		{"offline", strings.Repeat("é", MaxNote), true},
		{"online", "", false},
		{"", "", false},
		{"away", strings.Repeat("x", MaxNote+1), false},
		{"away", "bad\xff", false},
		{"away", "line\nbreak", false},
	} {
		if err := Check(tc.status, tc.note); (err == nil) != tc.ok {
			t.Errorf("Check(%q, %.20q) = %v, want ok %v", tc.status, tc.note, err, tc.ok)
		}
	}
}

// Two control planes on one store: what one sets, the other reads and
// its watchers hear of.
func TestSetWatchAcrossBooks(t *testing.T) {
	st := state.NewMemory()
	a, b := New(Config{Store: st}), New(Config{Store: st})
	defer a.Close()
	defer b.Close()
	ch, stop := b.Watch()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The bus subscription starts in the background: publish until heard.
	var got State
	for got.User == "" {
		if _, err := a.Set(ctx, "alice", "busy", "on a call"); err != nil {
			t.Fatal(err)
		}
		select {
		case got = <-ch:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("b's watcher heard nothing")
		}
	}
	if got.User != "alice" || got.Status != "busy" || got.Note != "on a call" || got.Updated.IsZero() {
		t.Fatalf("heard %+v", got)
	}
	if s, ok, err := b.Get(ctx, "alice"); err != nil || !ok || s.Status != "busy" {
		t.Fatalf("b.Get: %+v %v %v", s, ok, err)
	}
	if _, ok, _ := b.Get(ctx, "bob"); ok {
		t.Fatal("bob has a presence")
	}
	if _, err := a.Set(ctx, "bob", "online", ""); err == nil {
		t.Fatal("a bad status was stored")
	}
	all, err := b.All(ctx)
	if err != nil || len(all) != 1 || all["alice"].Status != "busy" {
		t.Fatalf("All: %v %v", all, err)
	}
}

// A watcher that does not read loses changes (counted); others are not
// held up; Close ends every watch.
func TestSlowWatcher(t *testing.T) {
	b := New(Config{Store: state.NewMemory()})
	slow, _ := b.Watch()
	for i := 0; i < watchQueue+5; i++ {
		b.fan(State{User: "alice", Status: "away"})
	}
	if b.Lost() != 5 {
		t.Fatalf("lost %d, want 5", b.Lost())
	}
	b.Close()
	n := 0
	for range slow {
		n++
	}
	if n != watchQueue {
		t.Fatalf("%d queued, want %d", n, watchQueue)
	}
}
