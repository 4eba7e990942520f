package server

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/siptest"
)

// Issue 9 item 5: the PBX challenges the browser's INVITE (407); the
// browser's credentialed retry reaches the PBX on the same dialog: same
// Call-ID and From tag, the next CSeq (RFC 3261 sections 8.1.3.5, 22.2),
// at the target that challenged it. The credentials check out against
// the challenge the PBX made for that dialog.
func TestTrunkAuthRetryKeepsTheDialog(t *testing.T) {
	tr := startTrunkWith(t, func(c *config.Config) { c.PBXAuthenticatesCalls = true })
	mb := newBrowserMedia(t)
	call, err := tr.browser.Invite(ctx(t), "bob", []byte(mb.Offer))
	if err != nil {
		t.Fatal(err)
	}
	first, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	chal := digest.Challenge{Realm: "pbx.test", Nonce: "n-" + first.CallID, Algorithm: "MD5", QOP: []string{"auth"}}
	go first.RejectWith(407, "Proxy Authentication Required", sip.NewHeader("Proxy-Authenticate", chal.String()))
	answered := make(chan *sip.Response, 1)
	go func() {
		res, _ := call.WaitAnswer(ctx(t), "wonderland")
		answered <- res
	}()
	retry, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal("no retry after the 407")
	}
	ftag, _ := first.Invite.From().Params.Get("tag")
	rtag, _ := retry.Invite.From().Params.Get("tag")
	if retry.CallID != first.CallID || rtag != ftag {
		t.Errorf("the retry is a new dialog: Call-ID %s -> %s, tag %s -> %s", first.CallID, retry.CallID, ftag, rtag)
	}
	if got, want := retry.Invite.CSeq().SeqNo, first.Invite.CSeq().SeqNo+1; got != want {
		t.Errorf("retry CSeq %d, want %d", got, want)
	}
	h := retry.Invite.GetHeader("Proxy-Authorization")
	if h == nil {
		t.Fatal("the retry carries no credentials")
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		t.Fatal(err)
	}
	want, err := digest.Digest(&chal, digest.Options{Method: "INVITE", URI: cred.URI, Username: "alice", Password: "wonderland",
		Cnonce: cred.Cnonce, Count: cred.Nc})
	if err != nil || cred.Response != want.Response || cred.Nonce != chal.Nonce {
		t.Errorf("credentials do not answer the PBX's challenge: %+v (%v)", cred, err)
	}
	plain := newPlain(t)
	go retry.Answer(siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
	res := <-answered
	if res == nil || res.StatusCode != 200 {
		t.Fatalf("call after the retry: %v", res)
	}
	call.Ack(ctx(t))
	if err := call.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := retry.WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(retry.Invite.Recipient.String(), "bob@") {
		t.Errorf("retry for %s", retry.Invite.Recipient.String())
	}
	tr.waitCalls(0)
	tr.waitSessions(0)
}
