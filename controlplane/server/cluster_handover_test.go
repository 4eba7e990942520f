package server

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/siptest"
)

// The control plane holding a browser's WebSocket hands over (SIGUSR2)
// while another one runs a call over it: the PBX's call reached A, the
// browser is connected to B, A relays the dialog over B's WebSocket. B
// hands over; the browser reconnects to B's successor and registers again
// there. A's call goes on (it waits for the browser's new flow instead of
// ending), A learns the new holder, the PBX's hold reaches the browser
// over its new WebSocket (through B2), media never stops, and a BYE from
// either side ends the call on both with one CDR (A's).
func TestClusterHandoverOfBrowserHolder(t *testing.T) {
	for _, byeFrom := range []string{"pbx", "browser"} {
		t.Run("bye from "+byeFrom, func(t *testing.T) { handoverOfBrowserHolder(t, byeFrom) })
	}
}

func handoverOfBrowserHolder(t *testing.T, byeFrom string) {
	r := newClusterRig(t)
	// A waits long enough for the browser to come back on a loaded CI
	// machine (B2's start is in the window).
	a := r.memberGrace("cp-a", 30*time.Second)
	bsrv := r.member("cp-b")
	b, err := siptest.NewBrowser(bsrv.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	r.browser = b
	r.register()
	key := bindingOf(t, bsrv, "cp-b").Key
	bindingOf(t, a, "cp-b")
	r.pbx.SetPeer(a.SIPAddr())

	plain := newPlain(t)
	call, err := r.pbx.Invite(ctx(t), key, siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
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
	straitRTP := plainAddr(t, res.Body())
	var pseq uint16 = 200
	plainSend(t, plain, straitRTP, &pseq, "before", 5)
	receiveAt(t, mb.Received, "before", 5)
	calls := a.Engine.Calls()
	if len(calls) != 1 {
		t.Fatalf("calls on A: %+v", calls)
	}
	id := calls[0].ID

	// B hands over: A is told, lets its relay go and keeps the call.
	if err := bsrv.Handover(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A lets the relay through B go", 5*time.Second, func() bool {
		using, _ := a.flows.Load().Relayed()
		return using == 0
	})
	mb.send(t, "between", 5)
	plainReceive(t, plain, "between", 5)
	if got := a.Engine.Calls(); len(got) != 1 || got[0].ID != id {
		t.Fatalf("A's calls after B's handover: %+v, want %s", got, id)
	}

	// The browser reconnects to B's successor and registers again there
	// (JsSIP and SIP.js do it by themselves); A learns the new holder.
	b2 := r.member("cp-b2")
	b.SetPeer(b2.HTTPAddr())
	r.register()
	if got := bindingOf(t, b2, "cp-b2"); got.Key != key {
		t.Fatalf("the browser's binding on B2: key %s, want %s (kept across the handover)", got.Key, key)
	}
	bindingOf(t, a, "cp-b2")
	waitFor(t, "A reaches the browser through B2", 10*time.Second, func() bool {
		using, _ := a.flows.Load().Relayed()
		_, held := b2.flows.Load().Relayed()
		return using == 1 && held == 1
	})

	// The PBX's hold reaches the browser over its new WebSocket.
	inc.OnReinvite(func(offer []byte) (int, []byte) { return 200, reanswer(t, mb.PC, offer) })
	hold, err := call.Reinvite(ctx(t), siptest.PlainSDP(2, plain.Addr(), plain.RTCPAddr(), "sendonly", false))
	if err != nil || hold.StatusCode != 200 || !bytes.Contains(hold.Body(), []byte("a=recvonly")) {
		t.Fatalf("hold after the handover: %v %v", hold, err)
	}
	select {
	case re := <-inc.Reinvites:
		if !bytes.Contains(re.Body(), []byte("a=sendonly")) {
			t.Fatalf("hold offer at the browser:\n%s", re.Body())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the PBX's hold did not reach the browser")
	}
	plainSend(t, plain, straitRTP, &pseq, "after", 5)
	receiveAt(t, mb.Received, "after", 5)

	if byeFrom == "pbx" {
		if err := call.Hangup(ctx(t)); err != nil {
			t.Fatalf("the PBX's BYE: %v", err)
		}
		if err := inc.WaitEnded(5 * time.Second); err != nil {
			t.Fatalf("the browser on B2 got no BYE: %v", err)
		}
	} else {
		// Over the browser's only WebSocket, B2's, which passes it to A.
		inc.SendTo(b2.HTTPAddr())
		if err := inc.Hangup(ctx(t)); err != nil {
			t.Fatalf("the browser's BYE through B2: %v", err)
		}
		if err := call.WaitEnded(5 * time.Second); err != nil {
			t.Fatalf("the PBX got no BYE: %v", err)
		}
	}
	waitFor(t, "the call ends on A", 10*time.Second, func() bool {
		return len(a.Engine.Calls()) == 0 && sum(a.Pool.Sessions()) == 0
	})
	if ss, _ := r.node.ListSessions(ctx(t)); len(ss) != 0 {
		t.Fatalf("the node still holds %d sessions", len(ss))
	}
	if err := a.State.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	want := `"reason":"caller bye"`
	if byeFrom == "browser" {
		want = `"reason":"callee bye"`
	}
	lines := r.cdrs("cp-a", "cp-b", "cp-b2")
	if len(lines) != 1 || !strings.Contains(lines[0], `"id":"`+id+`"`) || !strings.Contains(lines[0], want) {
		t.Fatalf("CDRs %q: want A's one, with %s", lines, want)
	}
}
