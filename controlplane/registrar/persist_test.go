package registrar

import (
	"context"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/state"
)

func uri(t *testing.T, s string) sip.Uri {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		t.Fatal(err)
	}
	return u
}

// Bindings outlive the registry through the state store: a SIP device's
// comes back live; a browser's comes back as one whose flow closed (its
// WebSocket died with the process) and keeps its key when the browser
// registers again; upstream relay state comes back too.
func TestRegistryPersists(t *testing.T) {
	ctx := context.Background()
	store := state.NewMemory()
	w := state.NewWriter(state.WriterConfig{Store: store})
	defer w.Close()
	r := NewRegistry()
	if _, err := r.Persist(ctx, w); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	ws := r.Put(Binding{AOR: "alice", Contact: uri(t, "sip:ab12@x.invalid;transport=ws"), Instance: "urn:uuid:1", RegID: "1",
		Transport: "WS", Source: "127.0.0.1:40000", Expires: exp, upCallID: "c1@strait", upFromTag: "t1", upCSeq: 7,
		upAuth: sip.NewHeader("Authorization", `Digest username="alice"`)})
	dev := r.Put(Binding{AOR: "bob", Contact: uri(t, "sip:bob@10.0.0.2:5062"), Transport: "UDP", Source: "10.0.0.2:5062", Expires: exp})
	gone := r.Put(Binding{AOR: "carol", Contact: uri(t, "sip:carol@10.0.0.3"), Transport: "UDP", Source: "10.0.0.3:5060", Expires: exp})
	r.Remove(gone.Key)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	r2 := NewRegistry()
	n, err := r2.Persist(ctx, w)
	if err != nil || n != 2 {
		t.Fatalf("Persist loaded %d bindings, %v; want 2", n, err)
	}
	if _, ok := r2.ByKey(dev.Key); !ok {
		t.Fatal("the SIP device's binding is not live after the restart")
	}
	if _, ok := r2.ByKey(ws.Key); ok || !r2.FlowFailed(ws.Key) {
		t.Fatal("the browser's binding should come back as flow-failed (430) until it registers again")
	}
	again := r2.Put(Binding{AOR: "alice", Contact: uri(t, "sip:ab12@x.invalid;transport=ws"), Instance: "urn:uuid:1", RegID: "1",
		Transport: "WS", Source: "127.0.0.1:40002", Expires: exp})
	if again.Key != ws.Key || again.upCallID != "c1@strait" || again.upCSeq != 7 || again.upAuth == nil {
		t.Fatalf("the browser registered again as %+v: want key %s and the relay state kept", again, ws.Key)
	}
	if f, ok := r2.FlowOf(uri(t, "sip:ab12@x.invalid;transport=ws;ob")); !ok || f != "127.0.0.1:40002" {
		t.Fatalf("FlowOf = %q, %v: want the new flow", f, ok)
	}
}

func TestStoreNoncesOnceAcrossControlPlanes(t *testing.T) {
	store := state.NewMemory()
	a := &StoreNonces{W: state.NewWriter(state.WriterConfig{Store: store})}
	b := &StoreNonces{W: state.NewWriter(state.WriterConfig{Store: store})}
	defer a.W.Close()
	defer b.W.Close()
	now := a.NotBefore() // issued after the store's generation was made
	if got := a.Use("n1", now, 1); got != NonceFresh {
		t.Fatalf("first use = %v", got)
	}
	if got := b.Use("n1", now, 1); got != NonceReplayed {
		t.Fatalf("the same count at another control plane = %v, want NonceReplayed", got)
	}
	if got := b.Use("n1", now, 2); got != NonceFresh {
		t.Fatalf("the next count = %v", got)
	}
	store.SetFailure(context.DeadlineExceeded)
	if got := a.Use("n2", now, 1); got != NonceForgotten {
		t.Fatalf("with the store down = %v, want NonceForgotten (a fresh nonce, never a replay through)", got)
	}
	if got := a.Use("old", now.Add(-time.Hour), 1); got != NonceForgotten {
		t.Fatalf("an expired nonce = %v", got)
	}
}

// A store that lost its records (a Redis restarted empty) lost the nonce
// counts with them: a count already used would pass again. After
// ForgetBefore (the Writer's OnLost) the nonces issued until then are
// forgotten (stale=true: a fresh nonce), and later ones count as before.
func TestStoreNoncesForgottenAfterStoreLoss(t *testing.T) {
	ctx := context.Background()
	store := state.NewMemory()
	n := &StoreNonces{W: state.NewWriter(state.WriterConfig{Store: store})}
	defer n.W.Close()
	issued := n.NotBefore() // after the store's generation was made
	if got := n.Use("n1", issued, 1); got != NonceFresh {
		t.Fatalf("first use = %v", got)
	}
	// The store loses its records.
	if err := store.Apply(ctx, []state.Change{{Kind: state.Nonces, Key: "n1"}}); err != nil {
		t.Fatal(err)
	}
	n.ForgetBefore(issued.Add(time.Second))
	if got := n.Use("n1", issued, 1); got != NonceForgotten {
		t.Fatalf("a used count after the loss = %v, want NonceForgotten", got)
	}
	if got := n.Use("n1", issued, 2); got != NonceForgotten {
		t.Fatalf("a nonce issued before the loss = %v, want NonceForgotten", got)
	}
	n.ForgetBefore(issued.Add(-time.Hour)) // never goes back
	later := n.NotBefore()                 // just after the loss was seen: kept
	if !later.After(issued.Add(time.Second)) {
		t.Fatalf("NotBefore %v, want after the loss seen at %v", later, issued.Add(time.Second))
	}

	if got := n.Use("n2", later, 1); got != NonceFresh {
		t.Fatalf("a nonce issued after the loss = %v, want NonceFresh", got)
	}
	if got := n.Use("n2", later, 1); got != NonceReplayed {
		t.Fatalf("its count again = %v, want NonceReplayed", got)
	}
	if got := n.Use("n1", issued, 3); got != NonceForgotten {
		t.Fatalf("ForgetBefore went back: %v", got)
	}
}
