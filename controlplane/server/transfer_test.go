package server

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/siptest"
)

// Attended transfer from a browser (RFC 3891, RFC 5589): with calls to
// bob and carol through the trunk, the browser REFERs bob to carol with a
// Replaces naming its call with carol; the PBX gets the REFER with a
// Replaces naming the PBX's own dialog of the carol call (its tag as
// to-tag, Strait's as from-tag), nothing of the browser's.
func TestTrunkAttendedTransferFromBrowser(t *testing.T) {
	tr := startTrunkWith(t, func(c *config.Config) { c.PBXAuthenticatesCalls = true })
	call1, inc1, _ := tr.establish(t)
	call2, inc2, _ := tr.establish(t)
	bLocal, bRemote := call2.Tags()
	rep := url.QueryEscape(call2.CallID + ";to-tag=" + bRemote + ";from-tag=" + bLocal)
	res, err := call1.Request(ctx(t), sip.REFER, nil, "", sip.NewHeader("Refer-To", "<sip:carol@127.0.0.1?Replaces="+rep+">"))
	if err != nil || res.StatusCode >= 300 {
		t.Fatalf("REFER: %v %v", res, err)
	}
	refer, err := tr.pbx.WaitRequest(sip.REFER, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rt := refer.GetHeader("Refer-To").Value()
	pLocal, pRemote := inc2.Tags()
	want := url.QueryEscape(inc2.CallID + ";to-tag=" + pLocal + ";from-tag=" + pRemote)
	if !strings.Contains(rt, "?Replaces="+want+">") {
		t.Fatalf("Refer-To at the PBX: %s\nwant Replaces=%s", rt, want)
	}
	hidden(t, "REFER to the PBX", refer.String(), call2.CallID, bLocal, ".invalid")
	for _, c := range []*siptest.Dialog{call1, call2} {
		c.Hangup(ctx(t))
	}
	inc1.WaitEnded(5 * time.Second)
	inc2.WaitEnded(5 * time.Second)
	tr.waitCalls(0)
}

// The PBX completes a transfer (or picks a call up) with an INVITE that
// replaces its dialog of a call with the browser: the new call goes to
// that browser, with a Replaces naming the browser's own dialog of that
// call; a Replaces that names no dialog, or the wrong tags, gets 481.
func TestTrunkInviteWithReplaces(t *testing.T) {
	tr := startTrunk(t)
	binding := tr.register(t)
	plain := newPlain(t)
	offer := siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false)
	call, err := tr.pbx.Invite(ctx(t), binding.Contact.User, offer)
	if err != nil {
		t.Fatal(err)
	}
	inc, err := tr.browser.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	mb := newAnswerer(t)
	go inc.Answer(mb.answer(t, inc.Invite.Body()))
	if res, err := call.WaitAnswer(ctx(t), ""); err != nil || res.StatusCode != 200 {
		t.Fatalf("first call: %v %v", res, err)
	}
	call.Ack(ctx(t))
	pLocal, pRemote := call.Tags()

	for _, bad := range []string{"nonexistent@x;to-tag=a;from-tag=b", call.CallID + ";to-tag=" + pRemote + ";from-tag=wrong"} {
		c, err := tr.pbx.Invite(ctx(t), "whoever", offer, sip.NewHeader("Replaces", bad))
		if err != nil {
			t.Fatal(err)
		}
		if res, _ := c.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 481 {
			t.Errorf("Replaces %s: %v, want 481", bad, res)
		}
	}

	// Strait is the target: its tag is the to-tag.
	c2, err := tr.pbx.Invite(ctx(t), "whoever", offer, sip.NewHeader("Replaces", call.CallID+";to-tag="+pRemote+";from-tag="+pLocal))
	if err != nil {
		t.Fatal(err)
	}
	inc2, err := tr.browser.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal("the replacing INVITE did not reach the browser")
	}
	h := inc2.Invite.GetHeader("Replaces")
	bLocal, bRemote := inc.Tags()
	if h == nil || h.Value() != inc.CallID+";to-tag="+bLocal+";from-tag="+bRemote {
		t.Fatalf("Replaces at the browser: %v, want %s;to-tag=%s;from-tag=%s", h, inc.CallID, bLocal, bRemote)
	}
	hidden(t, "INVITE to the browser", inc2.Invite.String(), call.CallID, pLocal)
	go inc2.Reject(486, "Busy Here")
	c2.WaitAnswer(ctx(t), "")
	call.Hangup(ctx(t))
	inc.WaitEnded(5 * time.Second)
	tr.waitCalls(0)
	tr.waitSessions(0)
}
