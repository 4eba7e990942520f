package presence

import (
	"context"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/state"
)

// A store that lost its records gets back what each Book last published
// (Rewrite), except where a record is there already; a Book that heard a
// newer publication of the same user from a peer leaves that user to it.
func TestRewriteAfterStoreLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st := state.NewMemory()
	now := time.Now()
	clock := func() time.Time { return now }
	a, b := New(Config{Store: st, Now: clock}), New(Config{Store: st, Now: clock})
	defer a.Close()
	defer b.Close()
	if _, err := a.Set(ctx, "alice", "busy", "on a call"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Set(ctx, "carol", "away", ""); err != nil {
		t.Fatal(err)
	}
	// carol publishes again through B, later: A hears of it.
	now = now.Add(time.Second)
	ch, stop := a.Watch()
	defer stop()
	for heard := false; !heard; {
		if _, err := b.Set(ctx, "carol", "dnd", ""); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-ch:
			heard = s.User == "carol" && s.Status == "dnd"
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("A heard nothing of B")
		}
	}
	// The store loses its records; bob's was written meanwhile by someone.
	for _, u := range []string{"alice", "carol"} {
		if err := st.Apply(ctx, []state.Change{{Kind: Kind, Key: u}}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := a.Rewrite(ctx); err != nil || n != 1 {
		t.Fatalf("A rewrote %d (%v), want alice's 1", n, err)
	}
	if n, err := b.Rewrite(ctx); err != nil || n != 1 {
		t.Fatalf("B rewrote %d (%v), want carol's 1", n, err)
	}
	all, err := a.All(ctx)
	if err != nil || all["alice"].Status != "busy" || all["alice"].Note != "on a call" || all["carol"].Status != "dnd" {
		t.Fatalf("after the rewrite: %+v %v", all, err)
	}
}
