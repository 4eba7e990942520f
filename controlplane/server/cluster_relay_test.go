package server

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/registrar"
	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/controlplane/state"
)

// bindingOf waits until srv's registry routes to alice's binding held by
// holder, and returns it.
func bindingOf(t *testing.T, srv *Server, holder string) registrar.Binding {
	t.Helper()
	var got registrar.Binding
	waitFor(t, srv.Instance+" learns alice's binding held by "+holder, 5*time.Second, func() bool {
		bs := srv.Registry.Lookup("alice")
		if len(bs) == 0 || bs[0].Holder != holder {
			return false
		}
		got = bs[0]
		return true
	})
	return got
}

// A PBX's call reaches a browser whose WebSocket another control plane
// holds: the PBX's INVITE arrives at A, the browser registered through B;
// A relays the dialog over B's WebSocket (Redis pub/sub), so the browser
// rings, answers, media flows through the node, and a BYE from either
// side ends the call on both with one CDR (A's). A CANCEL from the PBX
// reaches the ringing browser the same way. Nothing is left in Redis but
// the members' own entries, and B forgets the relayed dialogs when A lets
// the flow go.
func TestClusterRelaysToBrowserElsewhere(t *testing.T) {
	r := newClusterRig(t)
	a := r.member("cp-a")
	bsrv := r.member("cp-b")
	b, err := siptest.NewBrowser(bsrv.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	r.browser = b
	r.register()
	key := bindingOf(t, bsrv, "cp-b").Key
	if got := bindingOf(t, a, "cp-b"); got.Key != key {
		t.Fatalf("A's copy of the binding: key %s, want %s", got.Key, key)
	}
	r.pbx.SetPeer(a.SIPAddr())

	for _, byeFrom := range []string{"browser", "pbx"} {
		plain := newPlain(t)
		offer := siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false)
		call, err := r.pbx.Invite(ctx(t), key, offer)
		if err != nil {
			t.Fatal(err)
		}
		inc, err := b.WaitCall(5 * time.Second)
		if err != nil {
			t.Fatalf("the browser on B got no INVITE for the PBX's call to A: %v", err)
		}
		mb := newAnswerer(t)
		answer := mb.answer(t, inc.Invite.Body())
		go func() {
			inc.Ring()
			inc.Answer(answer)
		}()
		res, err := call.WaitAnswer(ctx(t), "")
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("answer through the relay: %v %v", res, err)
		}
		call.Ack(ctx(t))
		mb.waitConnected(t)
		(&env{t: t, node: r.node, srv: a}).waitConnected()
		if n, m := len(a.Engine.Calls()), len(bsrv.Engine.Calls()); n != 1 || m != 0 {
			t.Fatalf("calls on A %d, on B %d: want the call on A only", n, m)
		}
		if using, _ := a.flows.Load().Relayed(); using != 1 {
			t.Fatalf("A relays %d flows, want 1", using)
		}
		if _, held := bsrv.flows.Load().Relayed(); held != 1 {
			t.Fatalf("B holds %d relayed flows, want 1", held)
		}
		var pseq uint16 = 200
		plainSend(t, plain, plainAddr(t, res.Body()), &pseq, "p2b-"+byeFrom, 10)
		receiveAt(t, mb.Received, "p2b-"+byeFrom, 10)
		mb.send(t, "b2p-"+byeFrom, 10)
		plainReceive(t, plain, "b2p-"+byeFrom, 10)

		if byeFrom == "browser" {
			if err := inc.Hangup(ctx(t)); err != nil {
				t.Fatalf("the browser's BYE through B: %v", err)
			}
			if err := call.WaitEnded(5 * time.Second); err != nil {
				t.Fatalf("the PBX got no BYE: %v", err)
			}
		} else {
			if err := call.Hangup(ctx(t)); err != nil {
				t.Fatalf("the PBX's BYE: %v", err)
			}
			if err := inc.WaitEnded(5 * time.Second); err != nil {
				t.Fatalf("the browser on B got no BYE: %v", err)
			}
		}
		waitFor(t, "the call ends on A", 10*time.Second, func() bool {
			return len(a.Engine.Calls()) == 0 && sum(a.Pool.Sessions()) == 0
		})
		mb.Close()
	}

	// A hang-up through A while the browser rings: A's CANCEL reaches the
	// browser through B, the browser's 487 comes back (A ACKs it through
	// B), and the PBX gets its 487.
	plain := newPlain(t)
	call, err := r.pbx.Invite(ctx(t), key, siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := b.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	inc.Ring()
	answered := make(chan int, 1)
	go func() {
		res, _ := call.WaitAnswer(ctx(t), "")
		code := 0
		if res != nil {
			code = res.StatusCode
		}
		answered <- code
	}()
	for ringing := false; !ringing; {
		select {
		case r := <-call.Provisional:
			ringing = r.StatusCode == 180
		case <-time.After(5 * time.Second):
			t.Fatal("the browser's 180 did not reach the PBX")
		}
	}
	calls := a.Engine.Calls()
	if len(calls) != 1 {
		t.Fatalf("calls on A: %+v", calls)
	}
	go a.Engine.Hangup(calls[0].ID)
	select {
	case <-inc.Cancelled():
	case <-time.After(5 * time.Second):
		t.Fatal("A's CANCEL did not reach the browser on B")
	}
	select {
	case code := <-answered:
		if code != 487 {
			t.Fatalf("the PBX's INVITE ended with %d, want 487", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the PBX's INVITE did not end after the hang-up")
	}
	waitFor(t, "the cancelled call ends on A", 10*time.Second, func() bool {
		return len(a.Engine.Calls()) == 0 && sum(a.Pool.Sessions()) == 0
	})

	if ss, _ := r.node.ListSessions(ctx(t)); len(ss) != 0 {
		t.Fatalf("the node still holds %d sessions", len(ss))
	}
	if err := a.State.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if left := r.leftovers(a, bsrv); len(left) != 0 {
		t.Fatalf("left in Redis: %v", left)
	}
	lines := r.cdrs("cp-a", "cp-b")
	if len(lines) != 3 || !strings.Contains(lines[0], `"direction":"sip-to-browser"`) || !strings.Contains(lines[0], `"reason":"callee bye"`) ||
		!strings.Contains(lines[1], `"reason":"caller bye"`) {
		t.Fatalf("CDRs %q: want A's three, the first ended by the browser, the second by the PBX", lines)
	}

	// The browser's WebSocket closes: A's relayed flow closes with it.
	b.Close()
	waitFor(t, "A lets the relayed flow go", 5*time.Second, func() bool {
		using, _ := a.flows.Load().Relayed()
		_, held := bsrv.flows.Load().Relayed()
		return using == 0 && held == 0
	})
}

// A call taken over whose browser came back on a third control plane:
// A dies with the call; B takes it over; the browser reconnects and
// registers again on C. B reaches the browser through C's WebSocket: the
// call is not ended after the grace, media goes on, and a BYE from either
// side ends it on both with one CDR (B's) and nothing left in Redis.
//
// "stale binding": C, started, makes the dead A's binding of the browser
// its own (old flow, holder C) before the browser registers there, and B
// finds that first (a relay C closes at once, the flow being gone). B
// must go on looking and claim the browser's new flow at C, or the
// browser's BYE through C never reaches B (it failed so under load,
// "B reaches the browser through C: not within 10s").
func TestClusterTakeoverBrowserElsewhere(t *testing.T) {
	for _, byeFrom := range []string{"pbx", "browser"} {
		t.Run("bye from "+byeFrom, func(t *testing.T) { takeoverBrowserElsewhere(t, byeFrom, false) })
	}
	t.Run("stale binding", func(t *testing.T) { takeoverBrowserElsewhere(t, "browser", true) })
}

func takeoverBrowserElsewhere(t *testing.T, byeFrom string, stale bool) {
	r := newClusterRig(t)
	logs := &soakLog{}
	r.logFor = func(id string) *slog.Logger { return logs.logger(id, testLog(t)) }
	a := r.member("cp-a")
	// B waits long enough for its browser: C starts only after B took the
	// call over (else C might win the takeover).
	bsrv := r.memberGrace("cp-b", 30*time.Second)
	b, err := siptest.NewBrowser(a.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	r.browser = b
	ac := r.call(a)
	id := a.Engine.Calls()[0].ID
	key := bindingOf(t, a, "cp-a").Key
	if err := a.State.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	a.crash()
	waitFor(t, "B takes A's call over", 15*time.Second, func() bool { return len(bsrv.Engine.Calls()) == 1 })
	c := r.member("cp-c")
	if stale {
		// What B may hear from C before the browser's registration there
		// (as under load): A's binding of the browser, old flow, C its
		// holder.
		rec, ok, err := r.store.Get(ctx(t), state.Bindings, key)
		if err != nil || !ok {
			t.Fatalf("A's binding in Redis: %v %v", ok, err)
		}
		msg, _ := json.Marshal(map[string]any{"holder": "cp-c", "rec": json.RawMessage(rec)})
		bsrv.Registry.ApplyShared(msg)
		waitFor(t, "B finds the binding C adopted from A", 10*time.Second, func() bool {
			for _, l := range logs.grep("the browser of a call is back") {
				if strings.Contains(l, "cp=cp-b ") {
					return true
				}
			}
			return false
		})
	}
	r.browser.SetPeer(c.HTTPAddr())
	r.register()
	bindingOf(t, bsrv, "cp-c")
	waitFor(t, "B reaches the browser through C", 10*time.Second, func() bool {
		using, _ := bsrv.flows.Load().Relayed()
		_, held := c.flows.Load().Relayed()
		return using == 1 && held == 1
	})
	browserToPlain(t, ac.mb, &ac.bseq, ac.plain, "after takeover", 5)
	if got := bsrv.Engine.Calls(); len(got) != 1 || got[0].ID != id {
		t.Fatalf("B's calls %+v, want %s", got, id)
	}

	if byeFrom == "pbx" {
		r.pbx.SetPeer(bsrv.SIPAddr())
		ac.inc.SendTo(bsrv.SIPAddr())
		if err := ac.inc.Hangup(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if err := ac.call.WaitEnded(5 * time.Second); err != nil {
			t.Fatalf("the browser on C got no BYE from B: %v", err)
		}
	} else {
		// The browser's BYE goes over its WebSocket to C, which passes it
		// to B (B claimed the dialog when it found the browser there).
		ac.call.SendTo(c.HTTPAddr())
		if err := ac.call.Hangup(ctx(t)); err != nil {
			t.Fatalf("the browser's BYE through C: %v", err)
		}
		if err := ac.inc.WaitEnded(5 * time.Second); err != nil {
			t.Fatalf("the PBX got no BYE from B: %v", err)
		}
	}
	waitFor(t, "the call ends on B", 10*time.Second, func() bool {
		return len(bsrv.Engine.Calls()) == 0 && sum(bsrv.Pool.Sessions()) == 0
	})
	if ss, _ := r.node.ListSessions(ctx(t)); len(ss) != 0 {
		t.Fatalf("the node still holds %d sessions", len(ss))
	}
	if err := bsrv.State.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if left := r.leftovers(bsrv, c); len(left) != 0 {
		t.Fatalf("left in Redis: %v", left)
	}
	want := `"callee bye"`
	if byeFrom == "browser" {
		want = `"caller bye"`
	}
	if lines := r.cdrs("cp-a", "cp-b", "cp-c"); len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Fatalf("CDRs %q, want one with %s", lines, want)
	}
}
