package messaging

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/state/statetest"
)

// controlPlane is one control plane's messaging on a shared store.
type controlPlane struct {
	hub  *Hub
	mail *Mailbox
}

func newControlPlane(t *testing.T, st state.Store) controlPlane {
	t.Helper()
	h := New(Config{Store: st})
	m, err := NewMailbox(context.Background(), MailboxConfig{Store: st, Live: h, MaxAge: time.Hour,
		Known: func(string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); h.Close() })
	return controlPlane{hub: h, mail: m}
}

// sendUntilHeard publishes m on a until ch gets something (the bus
// subscriptions start in the background) and returns what came.
func sendUntilHeard(t *testing.T, a *Hub, m Message, keep bool, ch <-chan Message) Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		if err := a.Send(ctx, m, keep); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-ch:
			return got
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("nothing heard")
		}
	}
}

// drain reads ch up to a sentinel message sent after everything else
// (the bus keeps order) and returns what came before it.
func drain(t *testing.T, from *Hub, to string, ch <-chan Message) []Message {
	t.Helper()
	sentinel := Message{ID: "sentinel-" + NewID(), From: "test", To: to, Text: "end"}
	if err := from.Send(context.Background(), sentinel, false); err != nil {
		t.Fatal(err)
	}
	var out []Message
	for {
		select {
		case m := <-ch:
			if m.ID == sentinel.ID {
				return out
			}
			out = append(out, m)
		case <-time.After(5 * time.Second):
			t.Fatal("the sentinel did not come")
		}
	}
}

// Two control planes on one store (claim.go). A message that may be kept
// is delivered once to bob, whose listener is on the other control plane
// than the sender:
//   - live first: the listener's control plane claims it and delivers it,
//     and the sender's Put then fails with ErrTaken (counted), nothing is
//     kept, nothing comes twice;
//   - kept first: the listener's control plane finds the claim taken by
//     the mailbox and does not deliver it live; the mailbox hands it to
//     the listener at once and removes it; nothing comes twice.
//
// On each store: memory, the embedded bbolt file and a real redis-server
// (where two whole control planes are also tested: controlplane/server
// TestMessagesOnceAcrossControlPlanes).
func TestDeliveredOnce(t *testing.T) {
	for _, kind := range []string{"memory", "embedded", "redis"} {
		t.Run(kind, func(t *testing.T) { deliveredOnce(t, openStore(t, kind)) })
	}
}

// openStore opens a store of kind for the test, closed at its end.
func openStore(t *testing.T, kind string) state.Store {
	t.Helper()
	var st state.Store
	var err error
	switch kind {
	case "memory":
		st = state.NewMemory()
	case "embedded":
		st, err = state.OpenBolt(filepath.Join(t.TempDir(), state.FileName))
	case "redis":
		st, err = state.OpenRedis(statetest.StartRedis(t).URL)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func deliveredOnce(t *testing.T, st state.Store) {
	a, b := newControlPlane(t, st), newControlPlane(t, st)
	bob, stop := b.hub.Listen("bob")
	defer stop()
	ctx := context.Background()

	// Live first.
	m := Message{ID: NewID(), From: "alice", To: "bob", Text: "live", Time: time.Now().UTC(), Via: "api"}
	if got := sendUntilHeard(t, a.hub, m, true, bob); got.ID != m.ID {
		t.Fatalf("bob got %+v", got)
	}
	if err := a.mail.Put(ctx, m); !errors.Is(err, ErrTaken) {
		t.Fatalf("Put of a message delivered live: %v", err)
	}
	if a.mail.Count("taken_live") != 1 || a.mail.Waiting("bob") != 0 {
		t.Fatalf("taken_live %v, waiting %d", a.mail.Count("taken_live"), a.mail.Waiting("bob"))
	}
	// sendUntilHeard may have published it more than once (the bus
	// subscription starts in the background): whatever else came must be
	// that message.
	for _, x := range drain(t, a.hub, "bob", bob) {
		if x.ID != m.ID {
			t.Fatalf("bob got %+v", x)
		}
	}

	// Kept first.
	k := Message{ID: NewID(), From: "alice", To: "bob", Text: "kept", Time: time.Now().UTC(), Via: "api"}
	if err := a.mail.Put(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := a.hub.Send(ctx, k, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return b.hub.Yielded() == 1 })
	waitFor(t, func() bool { return a.mail.Waiting("bob") == 0 && b.mail.Waiting("bob") == 0 })
	got := drain(t, a.hub, "bob", bob)
	if len(got) != 1 || got[0].ID != k.ID || got[0].Text != "kept" {
		t.Fatalf("bob got %+v, want the kept message once", got)
	}
	if n := a.mail.Count("delivered") + b.mail.Count("delivered"); n != 1 {
		t.Fatalf("delivered %v times", n)
	}
	if recs, _ := st.Load(ctx, Offline); len(recs) != 0 {
		t.Fatalf("the store still holds %d", len(recs))
	}
}

// A hand-over of a user's kept messages is one at a time across control
// planes (the store's lease mailbox/USER): two registrations on two
// control planes at once do not both deliver.
func TestTakeAcrossControlPlanes(t *testing.T) {
	for _, kind := range []string{"memory", "redis"} {
		t.Run(kind, func(t *testing.T) { takeAcrossControlPlanes(t, openStore(t, kind)) })
	}
}

func takeAcrossControlPlanes(t *testing.T, st state.Store) {
	ctx := context.Background()
	a, b := newTestMailbox(t, st, 10, 10), newTestMailbox(t, st, 10, 10)
	defer a.Close()
	defer b.Close()
	if err := a.Put(ctx, msg("bob", "hi", time.Now())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return b.Waiting("bob") == 1 })
	msgs, done := a.Take(ctx, "bob")
	if len(msgs) != 1 {
		t.Fatalf("first take: %d", len(msgs))
	}
	if again, _ := b.Take(ctx, "bob"); len(again) != 0 {
		t.Fatalf("the other control plane's take at once got %d", len(again))
	}
	done()
	msgs, done = b.Take(ctx, "bob")
	defer done()
	if len(msgs) != 1 {
		t.Fatalf("after the first ended: %d", len(msgs))
	}
}
