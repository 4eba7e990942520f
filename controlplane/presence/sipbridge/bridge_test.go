package sipbridge

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	dto "github.com/prometheus/client_model/go"

	"github.com/strait-sbc/strait/controlplane/b2bua"
	"github.com/strait-sbc/strait/controlplane/presence"
	"github.com/strait-sbc/strait/controlplane/state"
)

// publish is one PUBLISH the fake upstream got.
type publish struct {
	user, ifMatch string
	body          bool
	expires       int
}

// fakeUpstream answers PUBLISH as answer says and records them.
type fakeUpstream struct {
	mu     sync.Mutex
	got    []publish
	answer func(n int, p publish) (int, map[string]string)
	seen   chan publish
}

func (f *fakeUpstream) Publish(_ context.Context, user, ifMatch string, body []byte, expires int) (*sip.Response, error) {
	p := publish{user: user, ifMatch: ifMatch, body: len(body) > 0, expires: expires}
	f.mu.Lock()
	n := len(f.got)
	f.got = append(f.got, p)
	f.mu.Unlock()
	code, hdrs := f.answer(n, p)
	req := sip.NewRequest(sip.PUBLISH, sip.Uri{Scheme: "sip", User: user, Host: "pbx"})
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.PUBLISH})
	res := sip.NewResponseFromRequest(req, code, "", nil)
	for k, v := range hdrs {
		res.AppendHeader(sip.NewHeader(k, v))
	}
	f.seen <- p
	return res, nil
}

func (f *fakeUpstream) SubscribePresence(context.Context, string, string, int, func(b2bua.Notify)) (*b2bua.Subscription, *sip.Response, error) {
	return nil, nil, context.Canceled
}

func next(t *testing.T, ch chan publish) publish {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no PUBLISH")
	}
	return publish{}
}

// The publication's life (RFC 3903): an initial PUBLISH with the PIDF; a
// 423 raises Expires to Min-Expires; a change goes with SIP-If-Match and
// the new body; a 412 (unknown entity tag) makes a fresh publication with
// the whole state; offline removes it (Expires 0); Close removes what is
// left.
func TestPublication(t *testing.T) {
	st := state.NewMemory()
	defer st.Close()
	book := presence.New(presence.Config{Store: st})
	defer book.Close()
	f := &fakeUpstream{seen: make(chan publish, 16)}
	etag := 0
	f.answer = func(n int, p publish) (int, map[string]string) {
		switch {
		case n == 0:
			return 423, map[string]string{"Min-Expires": "4000"}
		case n == 2 && p.ifMatch != "":
			return 412, nil // the server lost it
		}
		etag++
		return 200, map[string]string{"SIP-ETag": "e" + strconv.Itoa(etag), "Expires": strconv.Itoa(p.expires)}
	}
	b := New(Config{Upstream: f, Book: book, Entity: func(u string) string { return "sip:" + u + "@pbx" }})
	s := presence.State{User: "alice", Status: "busy"}
	b.Published(s)
	if p := next(t, f.seen); p.ifMatch != "" || !p.body || p.expires != PublishExpires {
		t.Fatalf("initial: %+v", p)
	}
	if p := next(t, f.seen); p.ifMatch != "" || !p.body || p.expires != 4000 {
		t.Fatalf("after 423: %+v", p)
	}
	s.Status = "away"
	b.Published(s)
	if p := next(t, f.seen); p.ifMatch != "e1" || !p.body {
		t.Fatalf("modify: %+v", p)
	}
	if p := next(t, f.seen); p.ifMatch != "" || !p.body {
		t.Fatalf("after 412: %+v", p)
	}
	s.Status = "offline"
	b.Published(s)
	if p := next(t, f.seen); p.ifMatch != "e2" || p.body || p.expires != 0 {
		t.Fatalf("offline: %+v", p)
	}
	s.Status = "available"
	b.Published(s)
	if p := next(t, f.seen); p.ifMatch != "" || !p.body {
		t.Fatalf("back: %+v", p)
	}
	b.Close()
	if p := next(t, f.seen); p.ifMatch != "e4" || p.body || p.expires != 0 {
		t.Fatalf("at Close: %+v", p)
	}
}

// A 489 leaves presence local: nothing more is sent for a while.
func TestPublicationUnsupported(t *testing.T) {
	st := state.NewMemory()
	defer st.Close()
	book := presence.New(presence.Config{Store: st})
	defer book.Close()
	f := &fakeUpstream{seen: make(chan publish, 16), answer: func(int, publish) (int, map[string]string) { return 489, nil }}
	b := New(Config{Upstream: f, Book: book, Entity: func(u string) string { return "sip:" + u + "@pbx" }})
	b.Published(presence.State{User: "alice", Status: "busy"})
	next(t, f.seen)
	for deadline := time.Now().Add(5 * time.Second); b.supported("publish"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the 489 was not taken as no presence")
		}
	}
	b.Published(presence.State{User: "bob", Status: "busy"})
	b.Close()
	select {
	case p := <-f.seen:
		t.Fatalf("sent after 489: %+v", p)
	default:
	}
}

// Watches are bounded (Config.MaxWatches): a watch of one more user is
// refused and counted, a watch of a user already watched is not, and a
// user no longer watched frees a place.
func TestWatchesBounded(t *testing.T) {
	st := state.NewMemory()
	book := presence.New(presence.Config{Store: st})
	b := New(Config{Upstream: &fakeUpstream{}, Book: book, MaxWatches: 2})
	defer b.Close()
	refused := func() float64 {
		var m dto.Metric
		if err := b.ops.WithLabelValues("subscribe", "refused_limit").Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	watched := func() int {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.watches)
	}
	stopA := b.Watch("alice")
	stopB := b.Watch("bob")
	b.Watch("carol")()
	if n, r := watched(), refused(); n != 2 || r != 1 {
		t.Fatalf("a third user past a bound of 2: %d watched, %v refused; want 2, 1", n, r)
	}
	stopA2 := b.Watch("alice") // already watched: shares the subscription
	if n, r := watched(), refused(); n != 2 || r != 1 {
		t.Fatalf("alice watched twice: %d watched, %v refused; want 2, 1", n, r)
	}
	stopA()
	stopA2()
	stopC := b.Watch("carol")
	if n, r := watched(), refused(); n != 2 || r != 1 {
		t.Fatalf("carol once alice is no longer watched: %d watched, %v refused; want 2, 1", n, r)
	}
	stopB()
	stopC()
	if n := watched(); n != 0 {
		t.Fatalf("%d watches left after every stop", n)
	}
}
