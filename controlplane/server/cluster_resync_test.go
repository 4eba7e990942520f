package server

import (
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/controlplane/state"
	"github.com/strait-sbc/strait/controlplane/state/statetest"
)

// A member whose subscription to the peers' registration changes is cut
// (its Redis connections killed, as by a network cut or CLIENT KILL)
// misses what they publish meanwhile: here the browser registering again
// on C instead of B. Once its subscription is back it reads the bindings
// again from Redis, so it routes the PBX's call to the browser's new
// holder at once, not after the browser's next REGISTER.
func TestClusterBindingsResyncAfterSubscriptionLoss(t *testing.T) {
	r := newClusterRig(t)
	px := statetest.NewCutProxy(t, r.redis.Addr)
	stA, err := state.OpenRedis(px.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stA.Close() })
	a := r.memberVia("cp-a", stA)
	bsrv := r.member("cp-b")
	c := r.member("cp-c")
	b, err := siptest.NewBrowser(bsrv.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	r.browser = b
	r.register()
	key := bindingOf(t, a, "cp-b").Key
	// B's record is in Redis before the browser moves: B's Writer writes
	// it up to a FlushInterval after the REGISTER, and written after C's
	// it would be the store's record A reads again (last write wins).
	if err := bsrv.State.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}

	// A is cut off from Redis while the browser registers again on C.
	px.Cut()
	b.SetPeer(c.HTTPAddr())
	r.register()
	if got := bindingOf(t, bsrv, "cp-c"); got.Key != key {
		t.Fatalf("the browser's binding on C: key %s, want %s", got.Key, key)
	}
	if err := c.State.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if bs := a.Registry.Lookup("alice"); len(bs) != 1 || bs[0].Holder != "cp-b" {
		t.Fatalf("A learnt the change while cut off: %+v", bs)
	}

	// Back: A catches up from Redis without another REGISTER.
	px.Restore()
	bindingOf(t, a, "cp-c")
	// A's Writer may have noticed the cut (a ping while it lasted): A then
	// refuses new calls with 503 until a ping finds the store answering.
	waitFor(t, "cp-a's store answers again", 5*time.Second, a.State.Up)
	// The browser's answer comes back through A's relay queue, which A
	// reads from where it stopped: no need to wait for A's reader.

	// The PBX's call to A reaches the browser through C's WebSocket, not
	// the one it left open on B.
	r.pbx.SetPeer(a.SIPAddr())
	plain := newPlain(t)
	call, err := r.pbx.Invite(ctx(t), key, siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := b.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatalf("the browser got no INVITE for the PBX's call to A: %v", err)
	}
	if _, held := c.flows.Load().Relayed(); held != 1 {
		t.Fatalf("C relays %d flows, want the browser's", held)
	}
	if _, held := bsrv.flows.Load().Relayed(); held != 0 {
		t.Fatalf("B relays %d flows: A routed to the browser's old binding", held)
	}
	inc.Reject(486, "Busy Here")
	if res, err := call.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 486 {
		t.Fatalf("the PBX's INVITE: %v %v, want the browser's 486", res, err)
	}
	waitFor(t, "the call ends on A", 10*time.Second, func() bool {
		return len(a.Engine.Calls()) == 0 && sum(a.Pool.Sessions()) == 0
	})
}
