package server

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/messaging"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/state/statetest"
)

// Redis restarted without persistence comes back empty. Strait finds out
// (counted in strait_state_store_lost_total) and writes again what it
// holds live: the browser's binding, and the presence its user published
// here; the browser's next REGISTER is challenged and succeeds, and its
// calls go through. What was only in Redis is lost and said so: the
// offline message waiting for bob is counted lost
// (strait_messages_offline_total{event="lost"}) and a log line names
// offline messages and call histories.
func TestStoreComesBackEmpty(t *testing.T) {
	rd := statetest.StartRedis(t)
	store, err := state.OpenRedis(rd.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	logs := &syncBuffer{}
	e := startOpts(t, func(c *config.Config) { c.Users = []string{"alice:a-secret", "bob:b-secret"} }, func(o *Options) {
		o.Store = sharedStore{store}
		o.Log = slog.New(slog.NewTextHandler(io.MultiWriter(logs, tWriterIf(t)), nil))
	})
	alice := registered(t, e, "alice", "a-secret")
	if _, err := e.srv.Presence.Set(ctx(t), "alice", "busy", "in a meeting"); err != nil {
		t.Fatal(err)
	}
	msg := messaging.Message{ID: messaging.NewID(), From: "alice", To: "bob", ContentType: "text/plain", Text: "call me", Time: time.Now(), Via: "api"}
	if err := e.srv.Mailbox.Put(ctx(t), msg); err != nil {
		t.Fatal(err)
	}
	if n := e.srv.Mailbox.Waiting("bob"); n != 1 {
		t.Fatalf("bob has %d messages waiting, want 1", n)
	}
	if err := e.srv.State.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}

	rd.Restart() // killed, started again empty
	waitFor(t, "Strait sees the store came back empty", 15*time.Second, func() bool { return e.srv.State.Lost() >= 1 })
	reg := e.srv.Metrics.Registry
	if v := metricValue(t, reg, "strait_state_store_lost_total", nil); v < 1 {
		t.Fatalf("strait_state_store_lost_total = %v", v)
	}
	waitFor(t, "the loss is said in the log", 5*time.Second, func() bool {
		return strings.Contains(logs.String(), "offline messages and call histories kept only there are lost")
	})
	if n := e.srv.Mailbox.Waiting("bob"); n != 0 {
		t.Fatalf("bob still has %d messages waiting in the index: they went with the store", n)
	}
	if v := metricValue(t, reg, "strait_messages_offline_total", map[string]string{"event": "lost"}); v != 1 {
		t.Fatalf(`strait_messages_offline_total{event="lost"} = %v, want 1`, v)
	}
	waitFor(t, "alice's presence written again", 5*time.Second, func() bool {
		s, ok, err := e.srv.Presence.Get(ctx(t), "alice")
		return err == nil && ok && s.Status == "busy" && s.Note == "in a meeting"
	})
	waitFor(t, "alice's binding written again", 5*time.Second, func() bool {
		recs, err := store.Load(ctx(t), state.Bindings)
		return err == nil && len(recs) == 1
	})

	// The browser's next REGISTER is challenged and succeeds; a call
	// goes through.
	res, err := alice.Register(ctx(t), "a-secret", 600)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER after the loss: %v %v", res, err)
	}
	mb := newBrowserMedia(t)
	call, err := alice.Invite(ctx(t), "echo", []byte(mb.Offer))
	if err != nil {
		t.Fatal(err)
	}
	res, err = call.WaitAnswer(ctx(t), "a-secret")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("a call after the loss: %v %v", res, err)
	}
	call.Ack(ctx(t))
	if err := call.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the call ends", 10*time.Second, func() bool { return len(e.srv.Engine.Calls()) == 0 })
}
