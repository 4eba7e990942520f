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

	// RFC 3891 section 3.
	good := call.CallID + ";to-tag=" + pRemote + ";from-tag=" + pLocal
	for _, bad := range []struct {
		replaces []string
		want     int
	}{
		{[]string{"nonexistent@x;to-tag=a;from-tag=b"}, 481},
		{[]string{call.CallID + ";to-tag=" + pRemote + ";from-tag=wrong"}, 481},
		{[]string{call.CallID + ";to-tag=" + pLocal + ";from-tag=" + pRemote}, 481}, // tags the wrong way round
		{[]string{good + ";early-only"}, 486},                                       // a confirmed dialog
		{[]string{good, good}, 400},                                                 // two Replaces
		{[]string{call.CallID + ";to-tag=" + pRemote}, 400},                         // no from-tag
	} {
		var hdrs []sip.Header
		for _, v := range bad.replaces {
			hdrs = append(hdrs, sip.NewHeader("Replaces", v))
		}
		c, err := tr.pbx.Invite(ctx(t), "whoever", offer, hdrs...)
		if err != nil {
			t.Fatal(err)
		}
		if res, _ := c.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != bad.want {
			t.Errorf("Replaces %s: %v, want %d", bad.replaces, res, bad.want)
		}
	}

	// Strait is the target: its tag is the to-tag.
	c2, err := tr.pbx.Invite(ctx(t), "whoever", offer, sip.NewHeader("Replaces", good))
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
	// The browser takes the new call and ends the replaced one, as JsSIP
	// does; Strait ends the PBX's replaced dialog with it.
	mb2 := newAnswerer(t)
	go inc2.Answer(mb2.answer(t, inc2.Invite.Body()))
	if res, err := c2.WaitAnswer(ctx(t), ""); err != nil || res.StatusCode != 200 {
		t.Fatalf("the replacing call: %v %v", res, err)
	}
	c2.Ack(ctx(t))
	if err := inc.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := call.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("the PBX's replaced dialog was not ended:", err)
	}
	tr.waitCalls(1)
	if err := c2.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	inc2.WaitEnded(5 * time.Second)
	tr.waitCalls(0)
	tr.waitSessions(0)
}

// The PBX transfers the browser, blind (RFC 3515, RFC 5589 section 6):
// its REFER reaches the browser with the target and the referrer at
// Strait's host, nothing of the PBX's network; the browser's 202 and
// NOTIFYs (sipfrag) go back to the PBX; the browser's INVITE to the
// target reaches the PBX with Referred-By at the PBX's host; the PBX
// then hangs up the first call.
func TestTrunkBlindTransferFromPBX(t *testing.T) {
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

	pbxHost := tr.pbx.Addr
	res, err := call.Request(ctx(t), sip.REFER, nil, "",
		sip.NewHeader("Refer-To", "<sip:carol@"+pbxHost+";user=phone>"),
		sip.NewHeader("Referred-By", "<sip:bob@"+pbxHost+">"))
	if err != nil || res.StatusCode != 202 {
		t.Fatalf("REFER: %v %v", res, err)
	}
	refer, err := tr.browser.WaitRequest(sip.REFER, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const straitHost = "127.0.0.1" // the host Strait names itself by, without the PBX's port
	if rt := refer.GetHeader("Refer-To").Value(); rt != "<sip:carol@"+straitHost+">" {
		t.Errorf("Refer-To at the browser: %s, want <sip:carol@%s>", rt, straitHost)
	}
	if rb := refer.GetHeader("Referred-By"); rb == nil || rb.Value() != "<sip:bob@"+straitHost+">" {
		t.Errorf("Referred-By at the browser: %v", rb)
	}
	hidden(t, "REFER to the browser", refer.String(), pbxHost, call.CallID)

	// RFC 3515 section 2.4.4: the referee reports progress by NOTIFY
	// with a message/sipfrag body; each one reaches the referrer.
	notify := func(frag, state string) {
		t.Helper()
		r, err := inc.Request(ctx(t), sip.NOTIFY, []byte(frag), "message/sipfrag",
			sip.NewHeader("Event", "refer"), sip.NewHeader("Subscription-State", state))
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("NOTIFY %s: %v %v", frag, r, err)
		}
		n, err := tr.pbx.WaitRequest(sip.NOTIFY, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if string(n.Body()) != frag || n.GetHeader("Event").Value() != "refer" ||
			n.GetHeader("Subscription-State").Value() != state || n.GetHeader("Content-Type").Value() != "message/sipfrag" {
			t.Fatalf("NOTIFY at the PBX:\n%s", n)
		}
	}
	notify("SIP/2.0 100 Trying", "active;expires=60")

	mb2 := newBrowserMedia(t)
	c2, err := tr.browser.Invite(ctx(t), "carol", []byte(mb2.Offer), sip.NewHeader("Referred-By", refer.GetHeader("Referred-By").Value()))
	if err != nil {
		t.Fatal(err)
	}
	inc2, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if inc2.Invite.Recipient.User != "carol" {
		t.Errorf("the transfer's INVITE is for %s", inc2.Invite.Recipient.User)
	}
	if rb := inc2.Invite.GetHeader("Referred-By"); rb == nil || !strings.HasPrefix(rb.Value(), "<sip:bob@127.0.0.1:") {
		t.Errorf("Referred-By at the PBX: %v", rb)
	}
	hidden(t, "INVITE to the PBX", inc2.Invite.String(), ".invalid", c2.CallID)
	plain2 := newPlain(t)
	go inc2.Answer(siptest.PlainSDP(1, plain2.Addr(), plain2.RTCPAddr(), "sendrecv", false))
	if r, err := c2.WaitAnswer(ctx(t), ""); err != nil || r.StatusCode != 200 {
		t.Fatalf("the transfer's call: %v %v", r, err)
	}
	c2.Ack(ctx(t))
	notify("SIP/2.0 200 OK", "terminated;reason=noresource")

	if err := call.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c2.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	inc2.WaitEnded(5 * time.Second)
	tr.waitCalls(0)
	tr.waitSessions(0)
}

// Attended transfer between browsers in standalone mode (RFC 5589
// section 7): alice talks to bob and to carol, then REFERs bob to carol
// with a Replaces naming her call with carol. bob's REFER names carol's
// dialog with Strait as carol sees it; bob's INVITE with that Replaces
// reaches carol with it unchanged, so carol's phone swaps calls; carol
// ends the replaced call and alice's side of it ends too.
func TestStandaloneAttendedTransfer(t *testing.T) {
	e := startStandalone(t)
	alice := registered(t, e, "alice", "a-secret")
	bob := registered(t, e, "bob", "b-secret")
	carol := registered(t, e, "carol", "c-secret")

	dial := func(from, to *siptest.Phone, user string, hdrs ...sip.Header) (*siptest.Dialog, *siptest.Dialog) {
		t.Helper()
		call, err := from.Invite(ctx(t), user, []byte(newBrowserMedia(t).Offer), hdrs...)
		if err != nil {
			t.Fatal(err)
		}
		inc, err := to.WaitCall(5 * time.Second)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		go inc.Answer(newAnswerer(t).answer(t, inc.Invite.Body()))
		if res, err := call.WaitAnswer(ctx(t), ""); err != nil || res.StatusCode != 200 {
			t.Fatalf("call to %s: %v %v", user, res, err)
		}
		call.Ack(ctx(t))
		return call, inc
	}
	toBob, atBob := dial(alice, bob, "bob")
	toCarol, atCarol := dial(alice, carol, "carol")

	aLocal, aRemote := toCarol.Tags()
	rep := url.QueryEscape(toCarol.CallID + ";to-tag=" + aRemote + ";from-tag=" + aLocal)
	if res, err := toBob.Request(ctx(t), sip.REFER, nil, "", sip.NewHeader("Refer-To", "<sip:carol@127.0.0.1?Replaces="+rep+">")); err != nil || res.StatusCode != 202 {
		t.Fatalf("REFER: %v %v", res, err)
	}
	refer, err := bob.WaitRequest(sip.REFER, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cLocal, cRemote := atCarol.Tags()
	want := atCarol.CallID + ";to-tag=" + cLocal + ";from-tag=" + cRemote
	rt := refer.GetHeader("Refer-To").Value()
	_, q, _ := strings.Cut(strings.Trim(rt, "<>"), "?Replaces=")
	if got, _ := url.QueryUnescape(q); got != want {
		t.Fatalf("Refer-To at bob: %s\nwant Replaces=%s", rt, want)
	}
	hidden(t, "REFER to bob", refer.String(), toCarol.CallID, aLocal)

	// bob, the referee, calls carol with the Replaces.
	newCall, atCarol2 := dial(bob, carol, "carol", sip.NewHeader("Replaces", want), sip.NewHeader("Referred-By", "<sip:alice@127.0.0.1>"))
	if h := atCarol2.Invite.GetHeader("Replaces"); h == nil || h.Value() != want {
		t.Fatalf("Replaces at carol: %v, want %s", h, want)
	}
	// carol swaps: she ends the replaced call; alice's side of it ends.
	if err := atCarol.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := toCarol.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("alice's call with carol did not end")
	}
	// alice, the transfer done, hangs up on bob.
	if err := toBob.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := atBob.WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	e.waitCalls(1)
	if err := newCall.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := atCarol2.WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	e.waitCalls(0)
	e.waitSessions(0)

	// A Replaces for a dialog nobody has gets 481, both ways round.
	for _, v := range []string{want, toCarol.CallID + ";to-tag=" + aRemote + ";from-tag=" + aLocal} {
		c, err := bob.Invite(ctx(t), "carol", []byte(newBrowserMedia(t).Offer), sip.NewHeader("Replaces", v))
		if err != nil {
			t.Fatal(err)
		}
		if res, _ := c.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 481 {
			t.Errorf("Replaces of an ended call %s: %v, want 481", v, res)
		}
	}
}
