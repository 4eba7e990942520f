package server

import (
	"testing"
	"time"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/siptest"
)

// With --plain-ports shared, a call's SIP leg gets media on one of the
// node's shared ports (no port pair of its own), and media flows both ways
// through it.
func TestTrunkSharedPlainPorts(t *testing.T) {
	tr := startTrunkWith(t, func(c *config.Config) {
		c.PlainPorts = "shared"
		c.PlainSharedPorts.First, c.PlainSharedPorts.Last = 2, 3 // the in-process node's; this test's node has its own
	})
	tr.register(t)
	mb := newBrowserMedia(t)
	call, err := tr.browser.Invite(ctx(t), "bob", []byte(mb.Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	plain := newPlain(t)
	go func() {
		inc.Ring()
		inc.Answer(siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
	}()
	res, err := call.WaitAnswer(ctx(t), "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	if err := call.Ack(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := mb.Accept(string(res.Body())); err != nil {
		t.Fatal(err)
	}
	if err := mb.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	tr.waitSessions(1)
	tr.waitConnected()
	straitRTP := plainAddr(t, inc.Invite.Body())
	shared := tr.node.Engine().Config().PlainSharedPorts
	if p := straitRTP.Port(); p < shared.First || p > shared.Last {
		t.Fatalf("the PBX was offered port %d, not one of the shared ports %v", p, shared)
	}
	if n := tr.node.Engine().PortsInUse(); n != 0 {
		t.Fatalf("%d port pairs allocated for a shared-port call", n)
	}
	var bseq, pseq uint16 = 1000, 5000
	browserToPlain(t, mb, &bseq, plain, "shared-b2p", 10)
	plainToBrowser(t, plain, straitRTP, &pseq, mb, "shared-p2b", 10)
	if err := call.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	tr.waitSessions(0)
}
