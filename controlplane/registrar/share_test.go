package registrar

import (
	"context"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/state"
)

// Two registries on one store share their bindings: each names its
// holder; a peer's copy routes (Lookup, ByKey, NewestFlow) but never
// counts as a flow of this process's (Sources, FromSource, RemoveSource);
// a browser that closes its WebSocket on its holder is flow-failed on the
// peer too; one that registers again on the peer keeps its key there and
// the first registry's copy moves to the new holder; removals delete only
// the remover's copies; a dead holder's browsers become flow-failed.
func TestRegistryShare(t *testing.T) {
	ctx := context.Background()
	store := state.NewMemory()
	wa := state.NewWriter(state.WriterConfig{Store: store})
	defer wa.Close()
	wb := state.NewWriter(state.WriterConfig{Store: store})
	defer wb.Close()
	a, b := NewRegistry(), NewRegistry()
	// The "bus": what one publishes the other applies.
	a.Share("cp-a", func(m []byte) { b.ApplyShared(m) }, func(string) bool { return true })
	b.Share("cp-b", func(m []byte) { a.ApplyShared(m) }, func(string) bool { return true })
	if _, err := a.Persist(ctx, wa); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Persist(ctx, wb); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	contact := uri(t, "sip:ab12@x.invalid;transport=ws")
	put := b.Put(Binding{AOR: "alice", Contact: contact, Instance: "urn:uuid:1", RegID: "1", Transport: "WS",
		Source: "127.0.0.1:40000", Expires: exp, upCallID: "c1@strait", upCSeq: 3})
	if put.Holder != "cp-b" {
		t.Fatalf("holder %q, want cp-b", put.Holder)
	}
	got, ok := a.ByKey(put.Key)
	if !ok || got.Holder != "cp-b" || got.Source != "127.0.0.1:40000" || got.upCallID != "c1@strait" {
		t.Fatalf("A's copy %+v %v", got, ok)
	}
	if nf, ok := a.NewestFlow(uri(t, "sip:ab12@x.invalid;ob")); !ok || nf.Holder != "cp-b" {
		t.Fatalf("NewestFlow on A: %+v %v", nf, ok)
	}
	if a.Sources()["127.0.0.1:40000"] || len(a.FromSource("127.0.0.1:40000")) != 0 {
		t.Fatal("a peer's flow counts as A's own")
	}
	if gone := a.RemoveSource("127.0.0.1:40000"); len(gone) != 0 {
		t.Fatalf("A's own flow of the same address closing removed a peer's binding: %+v", gone)
	}

	// The WebSocket closes on B: flow-failed on both.
	b.RemoveSource("127.0.0.1:40000")
	if _, ok := a.ByKey(put.Key); ok || !a.FlowFailed(put.Key) {
		t.Fatal("A does not see the binding's flow failed")
	}
	// The browser registers again on A: it keeps its key and relay state,
	// and B's copy moves to A.
	again := a.Put(Binding{AOR: "alice", Contact: contact, Instance: "urn:uuid:1", RegID: "1", Transport: "WS",
		Source: "127.0.0.1:50000", Expires: exp})
	if again.Key != put.Key || again.Holder != "cp-a" || again.upCallID != "c1@strait" {
		t.Fatalf("registered again on A: %+v", again)
	}
	if got, ok := b.ByKey(put.Key); !ok || got.Holder != "cp-a" || got.Source != "127.0.0.1:50000" {
		t.Fatalf("B's copy after the move: %+v %v", got, ok)
	}
	// The store names the new holder: a process starting now sees it as
	// A's.
	if err := wa.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c := NewRegistry()
	c.Share("cp-c", nil, func(h string) bool { return h == "cp-a" })
	wc := state.NewWriter(state.WriterConfig{Store: store})
	defer wc.Close()
	if _, err := c.Persist(ctx, wc); err != nil {
		t.Fatal(err)
	}
	if got, ok := c.ByKey(put.Key); !ok || got.Holder != "cp-a" {
		t.Fatalf("a new member's copy: %+v %v", got, ok)
	}
	// A dies: its browsers are flow-failed elsewhere.
	b.HolderGone("cp-a")
	if _, ok := b.ByKey(put.Key); ok || !b.FlowFailed(put.Key) {
		t.Fatal("a dead holder's browser is still routed to")
	}
	// A removal deletes only the remover's copy.
	a.Remove(put.Key)
	if a.Len() != 0 {
		t.Fatal("A kept its own removed binding")
	}
	// Malformed and own messages are ignored.
	b.ApplyShared([]byte("{"))
	b.ApplyShared([]byte(`{"holder":"cp-b","rec":{"key":"x"}}`))
	b.ApplyShared([]byte(`{"holder":"cp-x","rec":{"key":"y","contact":"::bad"}}`))
	if b.Len() != 0 {
		t.Fatalf("B applied bad messages: %+v", b.All())
	}
}

// A peer's flow handed over (or gone with its holder): the bindings on
// it become flow-failed, keeping their key; the holder's other flows and
// other holders' bindings stay.
func TestRegistryHolderFlowGone(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	ctx := context.Background()
	store := state.NewMemory()
	a := NewRegistry()
	a.Share("cp-a", func([]byte) {}, func(string) bool { return true })
	b := NewRegistry()
	b.Share("cp-b", a.ApplyShared, func(string) bool { return true })
	for _, r := range []*Registry{a, b} {
		w := state.NewWriter(state.WriterConfig{Store: store})
		defer w.Close()
		if _, err := r.Persist(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	one := b.Put(Binding{AOR: "alice", Contact: uri(t, "sip:a1@x.invalid;transport=ws"), Transport: "WS", Source: "127.0.0.1:1", Expires: exp})
	two := b.Put(Binding{AOR: "bob", Contact: uri(t, "sip:b1@y.invalid;transport=ws"), Transport: "WS", Source: "127.0.0.1:2", Expires: exp})
	if a.Len() != 2 {
		t.Fatalf("A's copies: %d, want 2", a.Len())
	}
	a.HolderFlowGone("cp-c", "127.0.0.1:1") // another holder's flow of the same address
	a.HolderFlowGone("cp-b", "127.0.0.1:1")
	if _, ok := a.ByKey(one.Key); ok || !a.FlowFailed(one.Key) {
		t.Fatal("the binding on the moved flow is not flow-failed")
	}
	if _, ok := a.ByKey(two.Key); !ok {
		t.Fatal("the holder's other flow's binding went too")
	}
	if got, ok := a.Find("alice", uri(t, "sip:a1@x.invalid;transport=ws"), "", ""); !ok || got.Key != one.Key {
		t.Fatalf("the browser back keeps its key: %+v %v", got, ok)
	}
}

// A registry whose subscription was lost catches up from the store's
// records: a browser that registered again on another peer meanwhile is
// routed there; its own records and an older record are left alone.
func TestRegistryResyncShared(t *testing.T) {
	ctx := context.Background()
	store := state.NewMemory()
	exp := time.Now().Add(time.Hour)
	contact := uri(t, "sip:a1@x.invalid;transport=ws")
	var a *Registry
	connected := true
	regs := map[string]*Registry{}
	for _, id := range []string{"cp-a", "cp-b", "cp-c"} {
		r := NewRegistry()
		regs[id] = r
		w := state.NewWriter(state.WriterConfig{Store: store})
		defer w.Close()
		r.Share(id, func(m []byte) {
			for other, o := range regs {
				if other != id && (other != "cp-a" || connected) {
					o.ApplyShared(m)
				}
			}
		}, func(string) bool { return true })
		if _, err := r.Persist(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	a = regs["cp-a"]
	put := regs["cp-b"].Put(Binding{AOR: "alice", Contact: contact, Instance: "urn:uuid:1", RegID: "1", Transport: "WS",
		Source: "127.0.0.1:1", Expires: exp})
	regs["cp-b"].store.Flush(ctx)
	own := a.Put(Binding{AOR: "bob", Contact: uri(t, "sip:b1@y.invalid;transport=ws"), Transport: "WS", Source: "127.0.0.1:9", Expires: exp})
	connected = false
	moved := regs["cp-c"].Put(Binding{AOR: "alice", Contact: contact, Instance: "urn:uuid:1", RegID: "1", Transport: "WS",
		Source: "127.0.0.1:2", Expires: exp})
	if moved.Key != put.Key {
		t.Fatalf("key %s on C, want %s", moved.Key, put.Key)
	}
	if got, _ := a.ByKey(put.Key); got.Holder != "cp-b" {
		t.Fatalf("A learnt the change while not subscribed: %+v", got)
	}
	a.store.Flush(ctx)
	regs["cp-c"].store.Flush(ctx)
	recs, err := store.Load(ctx, state.Bindings)
	if err != nil {
		t.Fatal(err)
	}
	if n := a.ResyncShared(recs); n != 1 {
		t.Fatalf("applied %d records, want C's one", n)
	}
	if got, _ := a.ByKey(put.Key); got.Holder != "cp-c" || got.Source != "127.0.0.1:2" {
		t.Fatalf("A's copy after the catch-up: %+v", got)
	}
	if got, ok := a.ByKey(own.Key); !ok || got.Holder != "cp-a" {
		t.Fatalf("A's own binding after the catch-up: %+v %v", got, ok)
	}
}

// A browser whose holder handed over (its binding here flow-failed, as
// Persist adopts a departed holder's) registers again on this member: the
// REGISTER's upstream state is kept at once (Keep) but the binding stays
// unreachable, here and at the peers, until the upstream accepts it on
// the new flow. Reachable at once at its old flow, it had a peer relay the
// browser's calls to a WebSocket that no longer exists.
func TestRegistryKeepLeavesClosedFlowClosed(t *testing.T) {
	ctx := context.Background()
	store := state.NewMemory()
	wa := state.NewWriter(state.WriterConfig{Store: store})
	defer wa.Close()
	wb := state.NewWriter(state.WriterConfig{Store: store})
	defer wb.Close()
	a, b := NewRegistry(), NewRegistry()
	a.Share("cp-a", func(m []byte) { b.ApplyShared(m) }, func(string) bool { return true })
	b.Share("cp-b2", func(m []byte) { a.ApplyShared(m) }, func(string) bool { return true })
	if _, err := a.Persist(ctx, wa); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Persist(ctx, wb); err != nil {
		t.Fatal(err)
	}
	contact := uri(t, "sip:ab12@x.invalid;transport=ws")
	old := Binding{AOR: "alice", Contact: contact, Instance: "urn:uuid:1", RegID: "1", Transport: "WS", Key: "k1",
		Source: "127.0.0.1:40000", Expires: time.Now().Add(time.Hour), Holder: "cp-b2", upCallID: "c1@strait", upCSeq: 3}
	b.mu.Lock()
	b.gone[old.Key] = &old
	b.mu.Unlock()

	found, known := b.Find("alice", contact, "urn:uuid:1", "1")
	if !known || found.Key != "k1" {
		t.Fatalf("Find: %+v %v", found, known)
	}
	found.upCSeq++
	b.Keep(found)
	if bs := b.Lookup("alice"); len(bs) != 0 {
		t.Fatalf("reachable before the upstream accepted: %+v", bs)
	}
	if _, ok := a.NewestFlow(uri(t, "sip:ab12@x.invalid;ob")); ok {
		t.Fatal("the peer routes to the closed flow")
	}
	if again, _ := b.Find("alice", contact, "urn:uuid:1", "1"); again.upCSeq != 4 {
		t.Fatalf("the CSeq was not kept: %d", again.upCSeq)
	}
	// Accepted on the new flow: reachable there, here and at the peer.
	found.Source = "127.0.0.1:40002"
	b.Put(found)
	if nf, ok := a.NewestFlow(uri(t, "sip:ab12@x.invalid;ob")); !ok || nf.Holder != "cp-b2" || nf.Source != "127.0.0.1:40002" {
		t.Fatalf("the peer's route: %+v %v", nf, ok)
	}
}
