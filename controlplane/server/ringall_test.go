package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/siptest"
)

// Ringing every registration of a user (controlplane/b2bua/ringall.go):
// sipgo peers as the user's browser tabs and SIP phone.

// completedElsewhere is the Reason of the CANCEL a registration gets when
// another answered (RFC 3326; JsSIP and SIP.js show it as answered
// elsewhere).
const completedElsewhere = `SIP;cause=200;text="Call completed elsewhere"`

// incoming waits for the call each phone receives, and checks that each
// is a dialog of its own (its own Call-ID).
func incoming(t *testing.T, phones ...*siptest.Phone) []*siptest.Dialog {
	t.Helper()
	seen := map[string]bool{}
	out := make([]*siptest.Dialog, len(phones))
	for i, p := range phones {
		d, err := p.WaitCall(5 * time.Second)
		if err != nil {
			t.Fatalf("registration %d not rung: %v", i, err)
		}
		if seen[d.CallID] {
			t.Fatalf("two forks share Call-ID %s", d.CallID)
		}
		seen[d.CallID] = true
		out[i] = d
	}
	return out
}

// waitCancelled waits for a fork's CANCEL and checks its Reason (RFC
// 3326), "" for none expected.
func waitCancelled(t *testing.T, d *siptest.Dialog, reason string) {
	t.Helper()
	select {
	case <-d.Cancelled():
	case <-time.After(10 * time.Second):
		t.Fatal("fork not cancelled")
	}
	c := d.CancelRequest()
	h := c.GetHeader("Reason")
	switch {
	case reason == "" && h != nil:
		t.Fatalf("CANCEL with Reason %q, want none", h.Value())
	case reason != "" && (h == nil || h.Value() != reason):
		t.Fatalf("CANCEL Reason %v, want %q", h, reason)
	}
}

// A browser calls bob, registered in two browser tabs and on a SIP phone:
// all three ring (the phone with plain RTP), the second tab answers and
// carries the media, the others get CANCEL "Call completed elsewhere";
// the losers' sessions are freed at once and nothing is left at the end.
func TestRingAllFirstAnswerWins(t *testing.T) {
	e := startStandalone(t)
	alice := registered(t, e, "alice", "a-secret")
	tab1 := registered(t, e, "bob", "b-secret")
	tab2 := registered(t, e, "bob", "b-secret")
	phone, err := siptest.NewUDP(e.srv.SIPAddr(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	if res, err := phone.Register(ctx(t), "b-secret", 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("phone REGISTER: %v %v", res, err)
	}
	base := runtime.NumGoroutine()

	ma := newBrowserMedia(t)
	call, err := alice.Invite(ctx(t), "bob", []byte(ma.Offer))
	if err != nil {
		t.Fatal(err)
	}
	in := incoming(t, tab1, tab2, phone)
	if !strings.Contains(string(in[2].Invite.Body()), "RTP/AVP") || strings.Contains(string(in[2].Invite.Body()), "fingerprint") {
		t.Fatalf("the phone's fork is not plain RTP:\n%s", in[2].Invite.Body())
	}
	for i := 0; i < 2; i++ {
		if !strings.Contains(string(in[i].Invite.Body()), "UDP/TLS/RTP/SAVPF") {
			t.Fatalf("tab %d's fork is not WebRTC:\n%s", i+1, in[i].Invite.Body())
		}
		hidden(t, "fork INVITE", in[i].Invite.String(), call.CallID, alice.Contact.Address.Host, ma.Ufrag, ma.Fingerprint)
	}
	e.waitSessions(3) // a session per fork while they ring
	in[0].Ring()
	in[2].Ring()
	type final struct {
		res *sip.Response
		err error
	}
	answered := make(chan final, 1)
	go func() {
		res, err := call.WaitAnswer(ctx(t), "")
		answered <- final{res, err}
	}()
	select {
	case p := <-call.Provisional:
		if p.StatusCode != 180 || len(p.Body()) > 0 {
			t.Fatalf("while several ring the caller hears %d with %d bytes, want 180 and no early media", p.StatusCode, len(p.Body()))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the caller heard no ringing")
	}
	mbob := newAnswerer(t)
	go in[1].Answer(mbob.answer(t, in[1].Invite.Body()))
	f := <-answered
	res, err := f.res, f.err
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	waitCancelled(t, in[0], completedElsewhere)
	waitCancelled(t, in[2], completedElsewhere)
	e.waitSessions(1) // the losers' sessions are gone
	if err := ma.Accept(string(res.Body())); err != nil {
		t.Fatal(err)
	}
	if err := ma.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	mbob.waitConnected(t)
	e.waitConnected()
	for i := 0; i < 10; i++ {
		ma.Send(0, uint16(10+i), uint32(160*i), false, payload("a2b", i))
		time.Sleep(2 * time.Millisecond)
	}
	receiveAt(t, mbob.Received, "a2b", 10)
	mbob.send(t, "b2a", 10)
	receive(t, ma, "b2a", 10)
	// In-dialog requests reach the winner.
	if r, err := call.Request(ctx(t), sip.MESSAGE, []byte("hi tab 2"), "text/plain"); err != nil || r.StatusCode != 200 {
		t.Fatalf("MESSAGE: %v %v", r, err)
	}
	if m, err := tab2.WaitRequest(sip.MESSAGE, 5*time.Second); err != nil || string(m.Body()) != "hi tab 2" {
		t.Fatalf("MESSAGE at the winner: %v %v", m, err)
	}
	if err := call.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := in[1].WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	e.waitSessions(0)
	e.waitCalls(0)
	lines := e.cdrLines()
	if last := lines[len(lines)-1]; !strings.Contains(last, `"direction":"browser-to-browser"`) || !strings.Contains(last, `"callee":"bob"`) ||
		!strings.Contains(last, `"reason":"caller bye"`) {
		t.Fatalf("CDR %s", last)
	}
	ma.Close()
	mbob.Close()
	waitGoroutines(t, base, 8)
}

// Every registration busy: the caller gets 486. One declines (603) while
// another rings: the caller gets 603 and the ringing one is cancelled
// with the 603 as Reason (RFC 3261 section 16.7 step 5). The caller
// cancels while both ring: both get CANCEL (without Reason).
func TestRingAllFailures(t *testing.T) {
	e := startStandalone(t)
	alice := registered(t, e, "alice", "a-secret")
	tab1 := registered(t, e, "bob", "b-secret")
	tab2 := registered(t, e, "bob", "b-secret")
	base := runtime.NumGoroutine()

	t.Run("all busy", func(t *testing.T) {
		call, err := alice.Invite(ctx(t), "bob", []byte(newBrowserMedia(t).Offer))
		if err != nil {
			t.Fatal(err)
		}
		in := incoming(t, tab1, tab2)
		in[0].Reject(486, "Busy Here")
		time.Sleep(50 * time.Millisecond) // one failure while the other still rings
		in[1].Reject(486, "Busy Here")
		if res, _ := call.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 486 {
			t.Fatalf("all busy: %v, want 486", res)
		}
		e.waitSessions(0)
		e.waitCalls(0)
	})
	t.Run("one declines", func(t *testing.T) {
		call, err := alice.Invite(ctx(t), "bob", []byte(newBrowserMedia(t).Offer))
		if err != nil {
			t.Fatal(err)
		}
		in := incoming(t, tab1, tab2)
		in[0].Ring()
		in[1].Reject(603, "Decline")
		if res, _ := call.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 603 {
			t.Fatalf("one declines: %v, want 603", res)
		}
		waitCancelled(t, in[0], `SIP;cause=603;text="Decline"`)
		e.waitSessions(0)
		e.waitCalls(0)
	})
	t.Run("caller cancels", func(t *testing.T) {
		call, err := alice.Invite(ctx(t), "bob", []byte(newBrowserMedia(t).Offer))
		if err != nil {
			t.Fatal(err)
		}
		in := incoming(t, tab1, tab2)
		in[0].Ring()
		in[1].Ring()
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		go func() {
			<-call.Provisional
			cancel() // WaitAnswer sends CANCEL
		}()
		if res, _ := call.WaitAnswer(cctx, ""); res != nil && res.StatusCode != 487 {
			t.Fatalf("cancelled call: %v, want 487", res)
		}
		waitCancelled(t, in[0], "")
		waitCancelled(t, in[1], "")
		e.waitSessions(0)
		e.waitCalls(0)
		lines := e.cdrLines()
		if last := lines[len(lines)-1]; !strings.Contains(last, `"reason":"caller cancel"`) {
			t.Fatalf("CDR %s", last)
		}
	})
	waitGoroutines(t, base, 8)
}

// A SIP phone (a raw UDP socket: it answers after the CANCEL, as a phone
// whose 200 crossed it does) and a browser tab are bob. The tab answers
// first; the phone's late 2xx is ACKed and hung up with BYE (RFC 3261
// section 13.2.2.4) and the tab's call goes on.
func TestRingAllLateAnswer(t *testing.T) {
	e := start(t, nil) // open registration on loopback
	alice, err := siptest.NewBrowser(e.srv.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	if res, err := alice.Register(ctx(t), "", 600); err != nil || res.StatusCode != 200 {
		t.Fatalf("alice REGISTER: %v %v", res, err)
	}
	tab, err := siptest.NewBrowser(e.srv.HTTPAddr(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	if res, err := tab.Register(ctx(t), "", 600); err != nil || res.StatusCode != 200 {
		t.Fatalf("tab REGISTER: %v %v", res, err)
	}
	ph := newRawPhone(t, e.srv.SIPAddr(), "bob")
	base := runtime.NumGoroutine()

	ma := newBrowserMedia(t)
	call, err := alice.Invite(ctx(t), "bob", []byte(ma.Offer))
	if err != nil {
		t.Fatal(err)
	}
	inv := ph.expect(t, sip.INVITE)
	ph.respond(t, inv, 180, nil)
	in := incoming(t, tab)[0]
	mbob := newAnswerer(t)
	go in.Answer(mbob.answer(t, in.Invite.Body()))
	res, err := call.WaitAnswer(ctx(t), "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	cancel := ph.expect(t, sip.CANCEL)
	if h := cancel.GetHeader("Reason"); h == nil || !strings.Contains(h.Value(), "Call completed elsewhere") {
		t.Fatalf("CANCEL without Reason: %v", cancel)
	}
	// The phone's 200 crossed the CANCEL.
	ph.respond(t, inv, 200, []byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"))
	ph.respond(t, cancel, 200, nil)
	ack := ph.expect(t, sip.ACK)
	if ack.CSeq().SeqNo != inv.CSeq().SeqNo {
		t.Fatalf("ACK CSeq %d, want the INVITE's %d", ack.CSeq().SeqNo, inv.CSeq().SeqNo)
	}
	bye := ph.expect(t, sip.BYE)
	if tag, _ := bye.To().Params.Get("tag"); tag != ph.tag {
		t.Fatalf("BYE To tag %q, want the phone's %q", tag, ph.tag)
	}
	ph.respond(t, bye, 200, nil)
	// The winner's call is untouched.
	if got := e.srv.Engine.Calls(); len(got) != 1 || got[0].State != "answered" {
		t.Fatalf("calls %v", got)
	}
	e.waitSessions(1)
	if err := ma.Accept(string(res.Body())); err != nil {
		t.Fatal(err)
	}
	mbob.waitConnected(t)
	if err := call.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	e.waitSessions(0)
	e.waitCalls(0)
	ma.Close()
	mbob.Close()
	waitGoroutines(t, base, 8)
}

// rawPhone is a SIP phone on a bare UDP socket: it registers (open
// registration) and answers only what the test tells it to, so that it can
// answer after a CANCEL.
type rawPhone struct {
	conn   *net.UDPConn
	strait *net.UDPAddr
	tag    string
}

func newRawPhone(t *testing.T, straitAddr, user string) *rawPhone {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	sa, err := net.ResolveUDPAddr("udp", straitAddr)
	if err != nil {
		t.Fatal(err)
	}
	p := &rawPhone{conn: conn, strait: sa, tag: "rawtag1"}
	me := conn.LocalAddr().String()
	reg := fmt.Sprintf("REGISTER sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKraw1;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:%s@%s>;tag=r1\r\nTo: <sip:%s@%s>\r\nCall-ID: rawreg1\r\nCSeq: 1 REGISTER\r\nContact: <sip:%s@%s>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n",
		sa.IP, me, user, sa.IP, user, sa.IP, user, me)
	if _, err := conn.WriteToUDP([]byte(reg), sa); err != nil {
		t.Fatal(err)
	}
	m := p.read(t)
	if res, ok := m.(*sip.Response); !ok || res.StatusCode != 200 {
		t.Fatalf("raw REGISTER: %v", m)
	}
	return p
}

func (p *rawPhone) read(t *testing.T) sip.Message {
	t.Helper()
	buf := make([]byte, 65535)
	p.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := p.conn.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("raw phone: %v", err)
	}
	m, err := sip.ParseMessage(buf[:n])
	if err != nil {
		t.Fatalf("raw phone: %v\n%s", err, buf[:n])
	}
	return m
}

// expect reads until a request with method arrives (retransmissions and
// OPTIONS are skipped).
func (p *rawPhone) expect(t *testing.T, method sip.RequestMethod) *sip.Request {
	t.Helper()
	for {
		if req, ok := p.read(t).(*sip.Request); ok && req.Method == method {
			return req
		}
	}
}

func (p *rawPhone) respond(t *testing.T, req *sip.Request, code int, body []byte) {
	t.Helper()
	res := sip.NewResponseFromRequest(req, code, "", body)
	if req.Method == sip.INVITE {
		res.To().Params.Add("tag", p.tag)
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "127.0.0.1", Port: p.conn.LocalAddr().(*net.UDPAddr).Port}})
		if len(body) > 0 {
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		}
	}
	if _, err := p.conn.WriteToUDP([]byte(res.String()), p.strait); err != nil {
		t.Fatal(err)
	}
}

// Early media passes only from the last registration still ringing: the
// phone's 183 while a tab rings reaches the caller as nothing more than
// the tab's 180; once the tab is busy, the phone's early media is the
// caller's (RFC 3261 section 13.2.1: the caller takes one answer).
func TestRingAllEarlyMedia(t *testing.T) {
	e := startStandalone(t)
	alice := registered(t, e, "alice", "a-secret")
	tab := registered(t, e, "bob", "b-secret")
	phone, err := siptest.NewUDP(e.srv.SIPAddr(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	if res, err := phone.Register(ctx(t), "b-secret", 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("phone REGISTER: %v %v", res, err)
	}
	call, err := alice.Invite(ctx(t), "bob", []byte(newBrowserMedia(t).Offer))
	if err != nil {
		t.Fatal(err)
	}
	in := incoming(t, tab, phone)
	answered := make(chan *sip.Response, 1)
	go func() {
		res, _ := call.WaitAnswer(ctx(t), "")
		answered <- res
	}()
	plain := newPlain(t)
	in[1].Progress(siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false))
	select {
	case p := <-call.Provisional:
		if len(p.Body()) > 0 {
			t.Fatalf("early media while another registration rings: %d\n%s", p.StatusCode, p.Body())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the caller heard nothing")
	}
	in[0].Reject(486, "Busy Here")
	select {
	case p := <-call.Provisional:
		if p.StatusCode != 183 || !strings.Contains(string(p.Body()), "UDP/TLS/RTP/SAVPF") {
			t.Fatalf("no early media from the last one ringing: %d\n%s", p.StatusCode, p.Body())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no early media from the last one ringing")
	}
	in[1].Reject(480, "Temporarily Unavailable")
	if res := <-answered; res == nil || res.StatusCode != 486 {
		t.Fatalf("busy and unavailable: %v, want 486", res)
	}
	e.waitSessions(0)
	e.waitCalls(0)
}

// A web app's call through the HTTP API rings every registration too: the
// first tab answers, the other is cancelled as completed elsewhere.
func TestRingAllFromAPI(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.Users = []string{"bob:b-secret"}
		c.APIToken = "s3cret"
	})
	api := apiClient{t: t, base: "http://" + e.srv.HTTPAddr(), token: "s3cret"}
	tab1 := registered(t, e, "bob", "b-secret")
	tab2 := registered(t, e, "bob", "b-secret")
	mb := newBrowserMedia(t)
	type result struct {
		code int
		body []byte
	}
	placed := make(chan result, 1)
	go func() {
		code, body := api.do("POST", "/v1/calls", map[string]any{"to": "bob", "offer": mb.Offer})
		placed <- result{code, body}
	}()
	in := incoming(t, tab1, tab2)
	mbob := newAnswerer(t)
	go in[0].Answer(mbob.answer(t, in[0].Invite.Body()))
	r := <-placed
	if r.code != 201 {
		t.Fatalf("POST /v1/calls: %d %s", r.code, r.body)
	}
	waitCancelled(t, in[1], completedElsewhere)
	e.waitSessions(1)
	var created struct{ ID, Answer string }
	json.Unmarshal(r.body, &created)
	if err := mb.Accept(created.Answer); err != nil {
		t.Fatal(err)
	}
	if err := mb.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if code, _ := api.do("DELETE", "/v1/calls/"+created.ID, nil); code != 204 {
		t.Fatalf("DELETE: %d", code)
	}
	if err := in[0].WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	e.waitSessions(0)
	e.waitCalls(0)
}

// A tab that rings is closed (its WebSocket goes): that fork fails at
// once, so when the other tab is busy the caller hears 486 without
// waiting for the closed tab's INVITE to time out (Timer B, 32 s).
func TestRingAllTabClosed(t *testing.T) {
	e := startStandalone(t)
	alice := registered(t, e, "alice", "a-secret")
	tab1 := registered(t, e, "bob", "b-secret")
	tab2 := registered(t, e, "bob", "b-secret")
	call, err := alice.Invite(ctx(t), "bob", []byte(newBrowserMedia(t).Offer))
	if err != nil {
		t.Fatal(err)
	}
	in := incoming(t, tab1, tab2)
	tab1.Close()
	time.Sleep(100 * time.Millisecond) // the close reaches strait first
	in[1].Reject(486, "Busy Here")
	start := time.Now()
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, _ := call.WaitAnswer(wctx, ""); res == nil || res.StatusCode != 486 {
		t.Fatalf("one tab closed, the other busy: %v after %v, want 486 at once", res, time.Since(start))
	}
	e.waitSessions(0)
	e.waitCalls(0)
}
