package messaging

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/state"
)

func newTestMailbox(t *testing.T, st state.Store, perUser, total int) *Mailbox {
	t.Helper()
	b, err := NewMailbox(context.Background(), MailboxConfig{Store: st, MaxPerUser: perUser, MaxTotal: total, MaxPerSender: total, MaxAge: time.Hour,
		Known: func(u string) bool { return u != "stranger" }})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func msg(to, text string, at time.Time) Message {
	return Message{ID: NewID(), From: "alice", To: to, ContentType: TextType, Text: text, Time: at, Via: "api"}
}

// The mailbox keeps messages per known user, in order, within its limits
// (per user and in all), each refusal counted; what is kept outlives the
// process with the embedded store; delivered messages go; two hand-overs
// of one user at once do not both get the messages.
func TestMailbox(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), state.FileName)
	st, err := state.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	b := newTestMailbox(t, st, 2, 3)
	now := time.Now().UTC()
	for i, tc := range []struct {
		m    Message
		want error
	}{
		{msg("bob", "one", now), nil},
		{msg("bob", "two", now.Add(time.Millisecond)), nil},
		{msg("bob", "three", now.Add(2*time.Millisecond)), ErrMailboxFull}, // per user
		{msg("stranger", "hi", now), ErrUnknownUser},
		{msg("carol", "c1", now), nil},
		{msg("dave", "d1", now), ErrMailboxFull}, // in all
	} {
		if err := b.Put(ctx, tc.m); !errors.Is(err, tc.want) {
			t.Fatalf("put %d: %v, want %v", i, err, tc.want)
		}
	}
	for ev, n := range map[string]float64{"stored": 3, "refused_full": 2, "refused_unknown": 1} {
		if got := b.Count(ev); got != n {
			t.Errorf("%s: %v, want %v", ev, got, n)
		}
	}
	b.Close()
	st.Close()

	// A new process on the same file finds them.
	st, err = state.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b = newTestMailbox(t, st, 2, 3)
	defer b.Close()
	if b.Waiting("bob") != 2 || b.Waiting("carol") != 1 {
		t.Fatalf("after the restart: bob %d carol %d", b.Waiting("bob"), b.Waiting("carol"))
	}
	msgs, done := b.Take(ctx, "bob")
	if len(msgs) != 2 || msgs[0].Text != "one" || msgs[1].Text != "two" {
		t.Fatalf("bob's messages: %+v", msgs)
	}
	if again, _ := b.Take(ctx, "bob"); len(again) != 0 {
		t.Fatalf("a second hand-over at once got %d", len(again))
	}
	if err := b.Delivered(ctx, msgs[0]); err != nil {
		t.Fatal(err)
	}
	done()
	if msgs, done = b.Take(ctx, "bob"); len(msgs) != 1 || msgs[0].Text != "two" {
		t.Fatalf("after one delivered: %+v", msgs)
	}
	done()
	if b.Count("delivered") != 1 {
		t.Fatalf("delivered: %v", b.Count("delivered"))
	}
	if recs, _ := st.Load(ctx, Offline); len(recs) != 2 {
		t.Fatalf("the store holds %d records, want 2", len(recs))
	}
}

// Messages older than MaxAge are dropped (counted as expired) and leave
// the store.
func TestMailboxExpiry(t *testing.T) {
	ctx := context.Background()
	st := state.NewMemory()
	defer st.Close()
	b := newTestMailbox(t, st, 10, 10)
	defer b.Close()
	if err := b.Put(ctx, msg("bob", "old", time.Now().Add(-2*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, msg("bob", "new", time.Now())); err != nil {
		t.Fatal(err)
	}
	b.sweep(ctx)
	msgs, done := b.Take(ctx, "bob")
	done()
	if len(msgs) != 1 || msgs[0].Text != "new" || b.Count("expired") != 1 {
		t.Fatalf("after the sweep: %+v, expired %v", msgs, b.Count("expired"))
	}
	if recs, _ := st.Load(ctx, Offline); len(recs) != 1 {
		t.Fatalf("the store holds %d records, want 1", len(recs))
	}
}

// Two mailboxes on one store (two control planes on Redis) learn each
// other's changes through the bus.
func TestMailboxSharedIndex(t *testing.T) {
	ctx := context.Background()
	st := state.NewMemory()
	defer st.Close()
	a, b := newTestMailbox(t, st, 10, 10), newTestMailbox(t, st, 10, 10)
	defer a.Close()
	defer b.Close()
	m := msg("bob", "hi", time.Now())
	if err := a.Put(ctx, m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return b.Waiting("bob") == 1 })
	if err := b.Delivered(ctx, m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return a.Waiting("bob") == 0 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
	}
}
