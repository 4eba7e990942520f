package messaging

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/state"
)

func TestCheckText(t *testing.T) {
	for text, ok := range map[string]bool{"hi": true, "": false, strings.Repeat("x", MaxText): true,
		strings.Repeat("x", MaxText+1): false, "bad\xff": false} {
		if err := CheckText(text); (err == nil) != ok {
			t.Errorf("CheckText(%.20q) = %v, want ok %v", text, err, ok)
		}
	}
}

// Two control planes on one store: a message sent on one reaches the
// recipient's listener on the other, and nobody else's.
func TestAcrossHubs(t *testing.T) {
	st := state.NewMemory()
	a, b := New(Config{Store: st}), New(Config{Store: st})
	defer a.Close()
	defer b.Close()
	bob, stop := b.Listen("bob")
	defer stop()
	carol, stopCarol := b.Listen("carol")
	defer stopCarol()
	if !b.Listening("bob") || a.Listening("bob") {
		t.Fatal("Listening is per process")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got Message
	for got.ID == "" { // the bus subscription starts in the background
		if err := a.Send(ctx, Message{ID: NewID(), From: "alice", To: "bob", Text: "hi", Via: "api"}, false); err != nil {
			t.Fatal(err)
		}
		select {
		case got = <-bob:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("bob heard nothing")
		}
	}
	if got.From != "alice" || got.Text != "hi" {
		t.Fatalf("got %+v", got)
	}
	select {
	case m := <-carol:
		t.Fatalf("carol got bob's message %+v", m)
	default:
	}
	// From SIP: text goes, is-composing does not.
	if !b.FromSIP(NewID(), "dave", "bob", "text/plain; charset=utf-8", []byte("from a phone")) {
		t.Fatal("bob listens here")
	}
	if b.FromSIP(NewID(), "dave", "bob", "application/im-iscomposing+xml", []byte("<x/>")) {
		t.Fatal("is-composing taken")
	}
	for {
		select {
		case m := <-bob:
			if m.Via == "sip" && m.Text == "from a phone" {
				return
			}
		case <-ctx.Done():
			t.Fatal("the SIP message did not arrive")
		}
	}
}
