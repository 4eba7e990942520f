package server

import (
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/siptest"
)

// A call taken over from a dead control plane is hung up before its
// browser is back (the PBX's BYE, or the API, reach the survivor while
// the browser is still reconnecting): the BYE toward the browser waits for
// its new WebSocket instead of going out on the dead one, so the browser
// leaves the call too, and the call has one CDR with its own hang-up's
// reason. The soak lost calls so under load (TestClusterSoak: "the
// browser got no BYE"): its browsers registered again after the takeover,
// and the PBX's BYE in between was sent to the dead flow and lost.
func TestClusterHangupBeforeBrowserBack(t *testing.T) {
	for _, by := range []string{"pbx", "api"} {
		t.Run("hangup by "+by, func(t *testing.T) { hangupBeforeBrowserBack(t, by) })
	}
}

func hangupBeforeBrowserBack(t *testing.T, by string) {
	r := newClusterRig(t)
	// A grace a loaded machine does not run out of: the browser comes
	// back well within it.
	a := r.memberGrace("cp-a", 30*time.Second)
	b, err := siptest.NewBrowser(a.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	r.browser = b
	ac := r.call(a)
	id := a.Engine.Calls()[0].ID
	if err := a.State.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	bsrv := r.memberGrace("cp-b", 30*time.Second)

	a.crash()
	waitFor(t, "B takes A's call over", 15*time.Second, func() bool { return len(bsrv.Engine.Calls()) == 1 })

	// Hung up while the browser is away.
	switch by {
	case "pbx":
		ac.inc.SendTo(bsrv.SIPAddr())
		if err := ac.inc.Hangup(ctx(t)); err != nil {
			t.Fatalf("the PBX's BYE to B: %v", err)
		}
	case "api":
		api := apiClient{t: t, base: "http://" + bsrv.HTTPAddr()}
		if code, body := api.do("DELETE", "/v1/calls/"+id, nil); code != 204 {
			t.Fatalf("DELETE on B: %d %s", code, body)
		}
		if err := ac.inc.WaitEnded(5 * time.Second); err != nil {
			t.Fatal("the PBX got no BYE after the hang-up through the API")
		}
	}
	waitFor(t, "the call unlisted on B", 5*time.Second, func() bool { return len(bsrv.Engine.Calls()) == 0 })
	select {
	case <-ac.call.Ended():
		t.Fatal("the browser got a BYE on a WebSocket that died with A")
	default:
	}

	// The browser is back (on B, through the load balancer): its BYE
	// comes over the new WebSocket.
	r.browser.SetPeer(bsrv.HTTPAddr())
	r.register()
	if err := ac.call.WaitEnded(10 * time.Second); err != nil {
		t.Fatalf("the browser got no BYE once back: %v", err)
	}
	waitFor(t, "the call's session deleted", 10*time.Second, func() bool { return sum(bsrv.Pool.Sessions()) == 0 })
	if ss, _ := r.node.ListSessions(ctx(t)); len(ss) != 0 {
		t.Fatalf("the node still holds %d sessions", len(ss))
	}
	lines := r.cdrs("cp-a", "cp-b")
	want := map[string]string{"pbx": `"callee bye"`, "api": `"api hangup"`}[by]
	if len(lines) != 1 || !strings.Contains(lines[0], want) || !strings.Contains(lines[0], id) {
		t.Fatalf("CDRs %q, want one for %s with %s", lines, id, want)
	}
}
