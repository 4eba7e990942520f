package server

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/siptest"
)

func startStandalone(t *testing.T) *env {
	return start(t, func(c *config.Config) { c.Users = []string{"alice:a-secret", "bob:b-secret", "carol:c-secret"} })
}

func registered(t *testing.T, e *env, user, password string) *siptest.Phone {
	t.Helper()
	p, err := siptest.NewBrowser(e.srv.HTTPAddr(), user)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	res, err := p.Register(ctx(t), "", 600)
	if err != nil || res.StatusCode != 401 {
		t.Fatalf("REGISTER without credentials: %v %v", res, err)
	}
	res, err = p.Register(ctx(t), password, 600)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER: %v %v", res, err)
	}
	return p
}

func TestStandaloneBrowserToBrowser(t *testing.T) {
	e := startStandalone(t)
	if p, _ := siptest.NewBrowser(e.srv.HTTPAddr(), "alice"); p != nil {
		res, _ := p.Register(ctx(t), "wrong", 600)
		if res == nil || res.StatusCode != 401 {
			t.Fatalf("wrong password: %v", res)
		}
		p.Close()
	}
	alice := registered(t, e, "alice", "a-secret")
	bob := registered(t, e, "bob", "b-secret")
	base := runtime.NumGoroutine()

	ma := newBrowserMedia(t)
	call, err := alice.Invite(ctx(t), "bob", []byte(ma.Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := bob.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hidden(t, "INVITE to bob", inc.Invite.String(), call.CallID, alice.Contact.Address.Host, ma.Ufrag, ma.Fingerprint)
	mbob := newAnswerer(t)
	answer := mbob.answer(t, inc.Invite.Body())
	go inc.Answer(answer)
	res, err := call.WaitAnswer(ctx(t), "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	hidden(t, "answer to alice", res.String(), inc.CallID, bob.Contact.Address.Host)
	if err := ma.Accept(string(res.Body())); err != nil {
		t.Fatal(err)
	}
	if err := ma.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	mbob.waitConnected(t)
	e.waitConnected()
	// Media both ways, relayed by the dataplane (two WebRTC legs).
	var seq uint16 = 10
	for i := 0; i < 10; i++ {
		ma.Send(0, seq, uint32(160*i), false, payload("a2b", i))
		seq++
		time.Sleep(2 * time.Millisecond)
	}
	receiveAt(t, mbob.Received, "a2b", 10)
	mbob.send(t, "b2a", 10)
	receive(t, ma, "b2a", 10)

	// In-call MESSAGE and INFO pass from alice to bob.
	if r, err := call.Request(ctx(t), sip.MESSAGE, []byte("hi bob"), "text/plain"); err != nil || r.StatusCode != 200 {
		t.Fatalf("MESSAGE: %v %v", r, err)
	}
	if m, err := bob.WaitRequest(sip.MESSAGE, 5*time.Second); err != nil || string(m.Body()) != "hi bob" {
		t.Fatalf("MESSAGE at bob: %v %v", m, err)
	}

	// BYE from the callee.
	if err := inc.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := call.WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	e.waitSessions(0)
	e.waitCalls(0)
	lines := e.cdrLines()
	last := lines[len(lines)-1]
	if !strings.Contains(last, `"direction":"browser-to-browser"`) || !strings.Contains(last, `"reason":"callee bye"`) ||
		!strings.Contains(last, `"caller":"alice"`) || !strings.Contains(last, `"callee":"bob"`) {
		t.Fatalf("CDR %s", last)
	}
	ma.Close()
	mbob.Close()
	waitGoroutines(t, base, 8)
}

func TestStandaloneEcho(t *testing.T) {
	e := startStandalone(t)
	alice := registered(t, e, "alice", "a-secret")
	mb := newBrowserMedia(t)
	call, err := alice.Invite(ctx(t), "echo", []byte(mb.Offer))
	if err != nil {
		t.Fatal(err)
	}
	res, err := call.WaitAnswer(ctx(t), "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("echo answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	if err := mb.Accept(string(res.Body())); err != nil {
		t.Fatal(err)
	}
	if err := mb.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	e.waitSessions(1)
	e.waitConnected()
	ss, _ := e.node.ListSessions(ctx(t))
	if len(ss[0].GetLegs()) != 1 {
		t.Fatalf("echo session has %d legs, want 1", len(ss[0].GetLegs()))
	}
	for i := 0; i < 10; i++ {
		mb.Send(0, uint16(100+i), uint32(160*i), false, payload("echo", i))
		time.Sleep(2 * time.Millisecond)
	}
	receive(t, mb, "echo", 10)
	if err := call.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	e.waitSessions(0)
	e.waitCalls(0)
	if last := e.cdrLines(); !strings.Contains(last[len(last)-1], `"direction":"echo"`) {
		t.Fatalf("CDR %s", last[len(last)-1])
	}
}

// A SIP phone on UDP registers with digest and calls a browser: a plain
// leg and a WebRTC leg; the browser hangs up. Unknown users get 404, known
// but absent ones 480.
func TestStandaloneSIPDevice(t *testing.T) {
	e := startStandalone(t)
	alice := registered(t, e, "alice", "a-secret")
	carol, err := siptest.NewUDP(e.srv.SIPAddr(), "carol")
	if err != nil {
		t.Fatal(err)
	}
	defer carol.Close()
	if res, err := carol.Register(ctx(t), "c-secret", 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("carol REGISTER: %v %v", res, err)
	}
	plain := newPlain(t)
	call, err := carol.Invite(ctx(t), "alice", siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := alice.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	mb := newAnswerer(t)
	go inc.Answer(mb.answer(t, inc.Invite.Body()))
	res, err := call.WaitAnswer(ctx(t), "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	mb.waitConnected(t)
	e.waitConnected()
	var pseq uint16 = 1
	plainSend(t, plain, plainAddr(t, res.Body()), &pseq, "c2a", 10)
	receiveAt(t, mb.Received, "c2a", 10)
	mb.send(t, "a2c", 10)
	plainReceive(t, plain, "a2c", 10)
	if err := inc.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := call.WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	e.waitSessions(0)

	for user, want := range map[string]int{"nobody": 404, "bob": 480} {
		c, _ := carol.Invite(ctx(t), user, siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
		if res, _ := c.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != want {
			t.Fatalf("call to %s: %v, want %d", user, res, want)
		}
	}
	// An unregistered phone must authenticate its INVITE (407).
	dave, _ := siptest.NewUDP(e.srv.SIPAddr(), "dave")
	defer dave.Close()
	c, _ := dave.Invite(ctx(t), "alice", siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
	if res, _ := c.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 407 {
		t.Fatalf("unauthenticated INVITE: %v", res)
	}
	e.waitCalls(0)
	e.waitSessions(0)
}

// Without configured users, standalone mode (loopback only) lets anyone
// register.
func TestStandaloneOpenRegistration(t *testing.T) {
	e := start(t, nil)
	p, err := siptest.NewBrowser(e.srv.HTTPAddr(), "anyone")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if res, err := p.Register(ctx(t), "", 600); err != nil || res.StatusCode != 200 {
		t.Fatalf("open REGISTER: %v %v", res, err)
	}
	if n := e.srv.Registry.Len(); n != 1 {
		t.Fatalf("%d bindings", n)
	}
	p.Close()
	deadline := time.Now().Add(5 * time.Second)
	for e.srv.Registry.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("binding outlived its WebSocket")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Video goes between browsers; toward a trunk that takes none it is turned
// down and, being the trailing m-line, left out of the offer (issue 9 item
// 6; see TestTrunkFewerMLines for the answer).
func TestVideoOffers(t *testing.T) {
	offer, err := os.ReadFile("testdata/chrome_av_bundle_offer.sdp")
	if err != nil {
		t.Fatal(err)
	}
	e := startStandalone(t)
	alice := registered(t, e, "alice", "a-secret")
	bob := registered(t, e, "bob", "b-secret")
	call, err := alice.Invite(ctx(t), "bob", offer)
	if err != nil {
		t.Fatal(err)
	}
	inc, err := bob.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	body := string(inc.Invite.Body())
	if !strings.Contains(body, "a=group:BUNDLE 0 1") || !strings.Contains(body, "VP8/90000") || strings.Contains(body, "m=video 0 ") {
		t.Fatalf("browser-to-browser offer lacks video:\n%s", body)
	}
	go inc.Reject(486, "Busy Here")
	call.WaitAnswer(ctx(t), "")

	tr := startTrunk(t)
	tr.register(t)
	call, _ = tr.browser.Invite(ctx(t), "bob", offer)
	pinc, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	body = string(pinc.Invite.Body())
	if strings.Count(body, "m=") != 1 || strings.Contains(body, "m=video") {
		t.Fatalf("trunk offer shows the video it rejected:\n%s", body)
	}
	go pinc.Reject(486, "Busy Here")
	call.WaitAnswer(ctx(t), "")
	e.waitSessions(0)
	tr.waitSessions(0)
}
