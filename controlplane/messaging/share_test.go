package messaging

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/state"
)

// MaxPerSender: its default is a 5% share of the total, and more than the
// total (or less than zero) is refused at start.
func TestMailboxSenderShareConfig(t *testing.T) {
	for _, tc := range []struct {
		total, perSender int
		want             int // 0: an error
	}{
		{0, 0, DefaultMaxPerSender},
		{10000, 0, 500},
		{100, 0, 5},
		{10, 0, 1}, // never 0
		{100, 100, 100},
		{100, 101, 0},
		{100, -1, 0},
	} {
		t.Run(fmt.Sprintf("total=%d,sender=%d", tc.total, tc.perSender), func(t *testing.T) {
			st := state.NewMemory()
			defer st.Close()
			b, err := NewMailbox(context.Background(), MailboxConfig{Store: st, MaxTotal: tc.total, MaxPerSender: tc.perSender})
			if tc.want == 0 {
				if err == nil {
					b.Close()
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if b.cfg.MaxPerSender != tc.want {
				t.Fatalf("MaxPerSender %d, want %d", b.cfg.MaxPerSender, tc.want)
			}
		})
	}
}

// One sender's waiting messages are bounded in all queues together: past
// its share its messages are refused (ErrSenderShare, which is also
// ErrMailboxFull) and counted, others' are still kept, and its share
// frees as its messages are delivered. The share is known to every
// control plane sharing the store (the bus notes carry the sender).
func TestMailboxSenderShare(t *testing.T) {
	ctx := context.Background()
	st := state.NewMemory()
	defer st.Close()
	known := func(u string) bool { return u != "stranger" }
	a, err := NewMailbox(ctx, MailboxConfig{Store: st, MaxPerUser: 3, MaxTotal: 10, MaxPerSender: 4, Known: known})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	other, err := NewMailbox(ctx, MailboxConfig{Store: st, MaxPerUser: 3, MaxTotal: 10, MaxPerSender: 4, Known: known})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	from := func(sender, to string) Message {
		m := msg(to, "x", time.Now())
		m.From = sender
		return m
	}
	var kept []Message
	for i, tc := range []struct {
		m    Message
		want error
	}{
		{from("mallory", "bob"), nil},
		{from("mallory", "bob"), nil},
		{from("mallory", "bob"), nil},
		{from("mallory", "bob"), ErrMailboxFull}, // bob's queue: 3
		{from("mallory", "carol"), nil},          // mallory's 4th
		{from("mallory", "dave"), ErrSenderShare},
		{from("mallory", "erin"), ErrSenderShare},
		{from("alice", "dave"), nil}, // others still get through
		{from("alice", "carol"), nil},
	} {
		err := a.Put(ctx, tc.m)
		if !errors.Is(err, tc.want) || (tc.want == ErrMailboxFull && errors.Is(err, ErrSenderShare)) {
			t.Fatalf("put %d (%s to %s): %v, want %v", i, tc.m.From, tc.m.To, err, tc.want)
		}
		if err == nil {
			kept = append(kept, tc.m)
		}
	}
	if !errors.Is(ErrSenderShare, ErrMailboxFull) {
		t.Error("ErrSenderShare is not an ErrMailboxFull")
	}
	for ev, n := range map[string]float64{"stored": 6, "refused_sender": 2, "refused_full": 1} {
		if got := a.Count(ev); got != n {
			t.Errorf("%s: %v, want %v", ev, got, n)
		}
	}
	if a.Sent("mallory") != 4 || a.Sent("alice") != 2 {
		t.Fatalf("waiting by sender: mallory %d alice %d", a.Sent("mallory"), a.Sent("alice"))
	}
	// The other control plane knows mallory's share is used up.
	waitFor(t, func() bool { return other.Sent("mallory") == 4 })
	if err := other.Put(ctx, from("mallory", "erin")); !errors.Is(err, ErrSenderShare) {
		t.Fatalf("on the other control plane: %v", err)
	}
	// Delivered messages free the share, here and there.
	if err := a.Delivered(ctx, kept[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return other.Sent("mallory") == 3 })
	if err := other.Put(ctx, from("mallory", "erin")); err != nil {
		t.Fatalf("after one delivered: %v", err)
	}
}
