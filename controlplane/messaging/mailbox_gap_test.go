package messaging

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/state/statetest"
)

// keysOf returns the keys of user's messages in b's index, oldest first.
func keysOf(b *Mailbox, user string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, w := range b.index[user] {
		out = append(out, w.key)
	}
	return out
}

// Two control planes share a real redis-server; B reaches it through a
// proxy that cuts its connections (a network cut: its bus subscription is
// lost and made again by the client). What A keeps and delivers while B
// is cut off is lost to B's bus, so B's index is stale; once B's
// subscription is back (the store's gap mark) B reads the offline
// messages again: it learns the messages kept meanwhile, for a user it
// knew of and one it did not, and forgets the one delivered meanwhile,
// which is not counted as lost (the store's generation did not change).
func TestMailboxCatchesUpAfterBusGap(t *testing.T) {
	rd := statetest.StartRedis(t)
	stA, err := state.OpenRedis(rd.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stA.Close() })
	w := state.NewWriter(state.WriterConfig{Store: stA}) // makes the store's generation
	t.Cleanup(func() { w.Close() })
	px := statetest.NewCutProxy(t, rd.Addr)
	stB, err := state.OpenRedis(px.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stB.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := newTestMailbox(t, stA, 10, 100)
	t.Cleanup(a.Close)
	b := newTestMailbox(t, stB, 10, 100)
	t.Cleanup(b.Close)
	if b.gen == "" {
		t.Fatal("B saw no store generation")
	}

	now := time.Now().UTC()
	m1 := msg("bob", "before the cut", now)
	if err := a.Put(ctx, m1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return b.Waiting("bob") == 1 })

	px.Cut()
	m2 := msg("bob", "during the cut", now.Add(time.Millisecond))
	m3 := msg("carol", "during the cut", now.Add(2*time.Millisecond))
	for _, m := range []Message{m2, m3} {
		if err := a.Put(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Delivered(ctx, m1); err != nil {
		t.Fatal(err)
	}
	// The bus notes went nowhere: B still has the old picture.
	if got := keysOf(b, "bob"); !slices.Equal(got, []string{key(m1)}) || b.Waiting("carol") != 0 {
		t.Fatalf("B learnt of the changes while cut off: bob %v, carol %d", got, b.Waiting("carol"))
	}

	px.Restore()
	waitFor(t, func() bool {
		return slices.Equal(keysOf(b, "bob"), []string{key(m2)}) && slices.Equal(keysOf(b, "carol"), []string{key(m3)})
	})
	if n := b.Count("lost"); n != 0 {
		t.Fatalf("a message delivered meanwhile counted as lost: %v", n)
	}
	// B hands the messages it learnt of over as if it had heard them.
	msgs, done := b.Take(ctx, "carol")
	done()
	if len(msgs) != 1 || msgs[0].ID != m3.ID {
		t.Fatalf("carol's messages through B: %+v", msgs)
	}
	// And it hears the bus again.
	m4 := msg("dave", "after the cut", now.Add(3*time.Millisecond))
	if err := a.Put(ctx, m4); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return b.Waiting("dave") == 1 })
}
