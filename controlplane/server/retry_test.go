package server

import (
	"strconv"
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

// Issue 9 item 4, from a browser toward the upstream: Strait follows a
// 302 to another user at the upstream on the same dialog (Call-ID, tag,
// next CSeq); it does not follow one to a host that is no upstream, to a
// number the dial plan refuses, or back to where it was: 480.
func TestTrunkRedirectFromBrowser(t *testing.T) {
	tr := startTrunkWith(t, func(c *config.Config) { c.PBXAuthenticatesCalls = true })
	pbxHost := tr.pbx.Addr
	call := func(to string) (*siptest.Dialog, chan *sip.Response) {
		t.Helper()
		mb := newBrowserMedia(t)
		out, err := tr.browser.Invite(ctx(t), to, []byte(mb.Offer))
		if err != nil {
			t.Fatal(err)
		}
		res := make(chan *sip.Response, 1)
		go func() { r, _ := out.WaitAnswer(ctx(t), ""); res <- r }()
		return out, res
	}
	contact := func(uri string) sip.Header {
		var u sip.Uri
		if err := sip.ParseUri(uri, &u); err != nil {
			t.Fatal(err)
		}
		return &sip.ContactHeader{Address: u, Params: sip.NewParams()}
	}

	out, res := call("bob")
	first, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	go first.RejectWith(302, "Moved Temporarily", contact("sip:carol@"+pbxHost))
	second, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal("the redirect was not followed")
	}
	if second.Invite.Recipient.User != "carol" || second.CallID != first.CallID ||
		second.Invite.CSeq().SeqNo != first.Invite.CSeq().SeqNo+1 {
		t.Errorf("followed redirect: %s Call-ID %s (was %s) CSeq %d (was %d)", second.Invite.Recipient.String(),
			second.CallID, first.CallID, second.Invite.CSeq().SeqNo, first.Invite.CSeq().SeqNo)
	}
	plain := newPlain(t)
	go second.Answer(siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
	if r := <-res; r == nil || r.StatusCode != 200 {
		t.Fatalf("redirected call: %v", r)
	}
	out.Ack(ctx(t))
	out.Hangup(ctx(t))
	second.WaitEnded(5 * time.Second)

	for _, tc := range []struct{ name, to string }{
		{"another host", "sip:carol@198.51.100.99"},
		{"a number the dial plan refuses", "sip:0044123456789@" + pbxHost},
		{"back to where it was", "sip:bob@" + pbxHost},
	} {
		_, res := call("bob")
		inc, err := tr.pbx.WaitCall(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		go inc.RejectWith(302, "Moved Temporarily", contact(tc.to))
		if r := <-res; r == nil || r.StatusCode != 480 {
			t.Errorf("%s: %v, want 480", tc.name, r)
		}
		select {
		case d := <-tr.pbx.Incoming:
			t.Errorf("%s: followed to %s", tc.name, d.Invite.Recipient.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	tr.waitCalls(0)
	tr.waitSessions(0)
}

// Issue 9 item 4, from the upstream toward a browser: a 3xx from the
// callee goes back to the PBX, which can follow it, with the Contact's
// user at the upstream's host.
func TestTrunkRedirectToPBX(t *testing.T) {
	tr := startTrunk(t)
	binding := tr.register(t)
	plain := newPlain(t)
	call, err := tr.pbx.Invite(ctx(t), binding.Contact.User, siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := tr.browser.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var u sip.Uri
	sip.ParseUri("sip:carol@x7.invalid;transport=ws", &u)
	go inc.RejectWith(302, "Moved Temporarily", &sip.ContactHeader{Address: u, Params: sip.NewParams()})
	res, _ := call.WaitAnswer(ctx(t), "")
	if res == nil || res.StatusCode != 302 {
		t.Fatalf("the PBX got %v, want the 302", res)
	}
	c := res.Contact()
	host, _, _ := strings.Cut(tr.pbx.Addr, ":")
	if c == nil || c.Address.User != "carol" || c.Address.Host != host || strings.Contains(res.String(), ".invalid") {
		t.Fatalf("302 at the PBX:\n%s", res)
	}
	tr.waitCalls(0)
	tr.waitSessions(0)
}

// Issue 9 item 3, Strait as UAC: its INVITE to the PBX says Supported:
// 100rel; the PBX's reliable 183 (Require: 100rel, RSeq), sent three
// times before any PRACK, is acknowledged with one PRACK (RAck RSeq CSeq
// INVITE) and reaches the browser once, with its early media answer; the
// call then connects.
func TestTrunkReliableProvisional(t *testing.T) {
	tr := startTrunkWith(t, func(c *config.Config) { c.PBXAuthenticatesCalls = true })
	mb := newBrowserMedia(t)
	call, err := tr.browser.Invite(ctx(t), "bob", []byte(mb.Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.ToLower(headerValues(inc.Invite, "Supported")), "100rel") {
		t.Errorf("INVITE to the PBX lacks Supported: 100rel: %q", headerValues(inc.Invite, "Supported"))
	}
	plain := newPlain(t)
	early := siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false)
	for range 3 {
		if err := inc.Provide(183, "Session Progress", early, sip.NewHeader("Require", "100rel"), sip.NewHeader("RSeq", "4711")); err != nil {
			t.Fatal(err)
		}
	}
	pr, err := tr.pbx.WaitRequest(sip.PRACK, 5*time.Second)
	if err != nil {
		t.Fatal("no PRACK for the reliable 183")
	}
	if got, want := headerValues(pr, "RAck"), "4711 "+itoa(inc.Invite.CSeq().SeqNo)+" INVITE"; got != want {
		t.Errorf("RAck %q, want %q", got, want)
	}
	if pr.CallID().Value() != inc.CallID {
		t.Errorf("PRACK outside the dialog")
	}
	go func() {
		time.Sleep(300 * time.Millisecond) // room for a second PRACK or 183, were Strait to send them
		inc.Answer(early)
	}()
	res, err := call.WaitAnswer(ctx(t), "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	n := 0
	for len(call.Provisional) > 0 {
		if r := <-call.Provisional; r.StatusCode > 100 {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the browser got %d provisionals for three copies of one reliable 183", n)
	}
	select {
	case r := <-tr.pbx.Requests:
		t.Errorf("the PBX got a second %s", r.Method)
	default:
	}
	call.Hangup(ctx(t))
	inc.WaitEnded(5 * time.Second)
	tr.waitSessions(0)
}

func headerValues(m interface{ GetHeaders(string) []sip.Header }, name string) string {
	var out []string
	for _, h := range m.GetHeaders(name) {
		out = append(out, h.Value())
	}
	return strings.Join(out, ", ")
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// RFC 3261 section 8.2.2.3: an INVITE that requires an extension Strait
// does not do gets 420 with Unsupported; 100rel and timer are done.
func TestRequireUnsupported(t *testing.T) {
	tr := startTrunk(t)
	binding := tr.register(t)
	plain := newPlain(t)
	call, err := tr.pbx.Invite(ctx(t), binding.Contact.User, siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false),
		sip.NewHeader("Require", "100rel, x-nonsense"))
	if err != nil {
		t.Fatal(err)
	}
	res, _ := call.WaitAnswer(ctx(t), "")
	if res == nil || res.StatusCode != 420 || headerValues(res, "Unsupported") != "x-nonsense" {
		t.Fatalf("INVITE requiring x-nonsense: %v", res)
	}
	select {
	case <-tr.browser.Incoming:
		t.Fatal("the browser got the call")
	default:
	}
}
