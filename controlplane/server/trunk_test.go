package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/siptest"
	"github.com/strait-sbc/strait/dataplane/mediatest"
)

// trunk is Strait in trunk mode with a PBX (a siptest phone with a digest
// registrar) and a browser registered through it as alice.
type trunk struct {
	*env
	pbx     *siptest.Phone
	reg     *siptest.Registrar
	browser *siptest.Phone
}

func startTrunk(t *testing.T) *trunk { t.Helper(); return startTrunkWith(t, nil) }

// startTrunkWith is startTrunk with more configuration.
func startTrunkWith(t *testing.T, mutate func(*config.Config)) *trunk {
	t.Helper()
	return startTrunkOpts(t, mutate, nil)
}

// startTrunkOpts is startTrunkWith with the server's options changed by
// opts too.
func startTrunkOpts(t *testing.T, mutate func(*config.Config), opts func(*Options)) *trunk {
	t.Helper()
	pbx, err := siptest.NewUDP("", "pbx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pbx.Close)
	reg := pbx.ServeRegistrar(map[string]string{"alice": "wonderland"})
	e := startOpts(t, func(c *config.Config) {
		c.Upstream = []string{"sip:" + pbx.Addr}
		if mutate != nil {
			mutate(c)
		}
	}, opts)
	pbx.SetPeer(e.srv.SIPAddr())
	b, err := siptest.NewBrowser(e.srv.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return &trunk{env: e, pbx: pbx, reg: reg, browser: b}
}

func (tr *trunk) register(t *testing.T) siptest.Binding {
	t.Helper()
	// Without credentials the PBX's challenge comes back as is.
	res, err := tr.browser.Register(ctx(t), "", 600)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 401 {
		t.Fatalf("first REGISTER: %d, want the PBX's 401", res.StatusCode)
	}
	if h := res.GetHeader("WWW-Authenticate"); h == nil || !strings.Contains(h.Value(), `realm="pbx.test"`) {
		t.Fatalf("challenge not passed through: %v", h)
	}
	res, err = tr.browser.Register(ctx(t), "wonderland", 600)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER with credentials: %v %v", res, err)
	}
	c := res.Contact()
	if c == nil || c.Address.User != tr.browser.Contact.Address.User {
		t.Fatalf("200 does not give the browser its own contact back: %v", res)
	}
	if e, _ := c.Params.Get("expires"); e != "300" {
		t.Fatalf("granted expiry %q, want the PBX's 300", e)
	}
	bs := tr.reg.Bindings()
	if len(bs) != 1 {
		t.Fatalf("PBX bindings %v", bs)
	}
	b := bs[0]
	if b.User != "alice" || b.Contact.Host != "127.0.0.1" || strings.Contains(b.Contact.String(), ".invalid") ||
		b.Contact.User == tr.browser.Contact.Address.User {
		t.Fatalf("the PBX sees the browser's contact or a wrong user: %+v", b)
	}
	return b
}

// hidden checks that nothing of one side's addressing reached the other.
func hidden(t *testing.T, what string, msg string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			t.Errorf("%s leaks %q:\n%s", what, s, msg)
		}
	}
}

func TestTrunkBrowserCallsPBX(t *testing.T) {
	tr := startTrunk(t)
	tr.register(t)
	base := runtime.NumGoroutine()

	mb := newBrowserMedia(t)
	call, err := tr.browser.Invite(ctx(t), "bob", []byte(mb.Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	inv := inc.Invite.String()
	hidden(t, "INVITE to the PBX", inv, call.CallID, ".invalid", "a=ice", "a=fingerprint", "UDP/TLS", tr.browser.Contact.Address.User)
	if inc.Invite.Recipient.User != "bob" || inc.Invite.From().Address.User != "alice" {
		t.Fatalf("INVITE %s from %s", inc.Invite.Recipient.String(), inc.Invite.From().Address.String())
	}
	if !bytes.Contains(inc.Invite.Body(), []byte("RTP/AVP 0 126")) && !bytes.Contains(inc.Invite.Body(), []byte("RTP/AVP 0 ")) {
		t.Fatalf("offer to the PBX:\n%s", inc.Invite.Body())
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
	answer := res.Body()
	hidden(t, "answer to the browser", res.String(), plain.Addr().String(), inc.CallID, "RTP/AVP", "0.0.0.0", "a=crypto")
	for _, want := range []string{"a=ice-lite", "a=setup:active", "a=rtcp-mux", "UDP/TLS/RTP/SAVPF", "a=fingerprint:sha-256", "a=ssrc:"} {
		if !bytes.Contains(answer, []byte(want)) {
			t.Errorf("answer lacks %s:\n%s", want, answer)
		}
	}
	if err := mb.Accept(string(answer)); err != nil {
		t.Fatal(err)
	}
	if err := mb.WaitConnected(ctx(t)); err != nil {
		t.Fatal(err)
	}
	tr.waitSessions(1)
	tr.waitConnected()
	straitRTP := plainAddr(t, inc.Invite.Body())
	var bseq, pseq uint16 = 1000, 5000
	browserToPlain(t, mb, &bseq, plain, "b2p", 10)
	plainToBrowser(t, plain, straitRTP, &pseq, mb, "p2b", 10)

	// DTMF as SIP INFO passes through.
	dtmf := []byte("Signal=5\r\nDuration=160\r\n")
	if r, err := call.Request(ctx(t), sip.INFO, dtmf, "application/dtmf-relay"); err != nil || r.StatusCode != 200 {
		t.Fatalf("INFO: %v %v", r, err)
	}
	info, err := tr.pbx.WaitRequest(sip.INFO, 5*time.Second)
	if err != nil || !bytes.Equal(info.Body(), dtmf) || info.ContentType().Value() != "application/dtmf-relay" {
		t.Fatalf("INFO at the PBX: %v %v", info, err)
	}

	// The PBX holds the old way (c=0.0.0.0): the browser gets a
	// direction, never 0.0.0.0; then it resumes.
	call.OnReinvite(func(offer []byte) (int, []byte) { return 200, reanswer(t, mb.PC, offer) })
	hold := siptest.PlainSDP(2, plain.Addr(), plain.RTCPAddr(), "sendrecv", true)
	r, err := inc.Reinvite(ctx(t), hold)
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("hold re-INVITE: %v %v", r, err)
	}
	reoffer := <-call.Reinvites
	if !bytes.Contains(reoffer.Body(), []byte("a=sendonly")) || bytes.Contains(reoffer.Body(), []byte("0.0.0.0")) {
		t.Fatalf("hold offer to the browser:\n%s", reoffer.Body())
	}
	if !bytes.Contains(r.Body(), []byte("a=recvonly")) || bytes.Contains(r.Body(), []byte("0.0.0.0")) {
		t.Fatalf("hold answer to the PBX:\n%s", r.Body())
	}
	resume := siptest.PlainSDP(3, plain.Addr(), plain.RTCPAddr(), "sendrecv", false)
	if r, err := inc.Reinvite(ctx(t), resume); err != nil || r.StatusCode != 200 || !bytes.Contains(r.Body(), []byte("a=sendrecv")) {
		t.Fatalf("resume re-INVITE: %v %v", r, err)
	}
	<-call.Reinvites
	browserToPlain(t, mb, &bseq, plain, "resumed-b2p", 5)
	plainToBrowser(t, plain, straitRTP, &pseq, mb, "resumed-p2b", 5)

	// BYE from the browser reaches the PBX; the session goes.
	if err := call.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	tr.waitSessions(0)
	tr.waitCalls(0)
	var rec struct {
		Caller, Callee, Direction, Reason string
		Cause                             int
		Duration                          float64 `json:"duration_s"`
		Media                             []struct {
			PacketsIn uint64 `json:"packets_in"`
		}
	}
	lines := tr.cdrLines()
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Caller != "alice" || rec.Callee != "bob" || rec.Direction != "browser-to-sip" || rec.Cause != 200 ||
		rec.Reason != "caller bye" || len(rec.Media) != 2 || rec.Media[0].PacketsIn == 0 || rec.Media[1].PacketsIn == 0 {
		t.Fatalf("CDR %s", lines[len(lines)-1])
	}
	mb.Close()
	plain.Close()
	waitGoroutines(t, base, 8)
}

func TestTrunkPBXCallsBrowser(t *testing.T) {
	tr := startTrunk(t)
	binding := tr.register(t)
	base := runtime.NumGoroutine()

	// The PBX calls the contact the browser registered through Strait.
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
	hidden(t, "INVITE to the browser", inc.Invite.String(), call.CallID, plain.Addr().String(), "RTP/AVP", "0.0.0.0", tr.pbx.Addr)
	if inc.Invite.Recipient.User != tr.browser.Contact.Address.User {
		t.Fatalf("INVITE to %s, want the browser's contact", inc.Invite.Recipient.String())
	}
	mb := newAnswerer(t)
	answer := mb.answer(t, inc.Invite.Body())
	go func() {
		inc.Ring()
		inc.Answer(answer)
	}()
	res, err := call.WaitAnswer(ctx(t), "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	hidden(t, "answer to the PBX", res.String(), ".invalid", "a=ice", "a=fingerprint", "UDP/TLS", inc.CallID)
	mb.waitConnected(t)
	tr.waitConnected()
	straitRTP := plainAddr(t, res.Body())
	var pseq uint16 = 200
	plainSend(t, plain, straitRTP, &pseq, "p2b", 10)
	receiveAt(t, mb.Received, "p2b", 10)
	mb.send(t, "b2p", 10)
	plainReceive(t, plain, "b2p", 10)

	// MESSAGE both ways, outside the call.
	if r, err := tr.pbx.Send(ctx(t), sip.MESSAGE, binding.Contact.User, []byte("hello browser"), "text/plain"); err != nil || r.StatusCode != 200 {
		t.Fatalf("MESSAGE to the browser: %v %v", r, err)
	}
	m, err := tr.browser.WaitRequest(sip.MESSAGE, 5*time.Second)
	if err != nil || string(m.Body()) != "hello browser" || m.From().Address.User != "pbx" {
		t.Fatalf("MESSAGE at the browser: %v %v", m, err)
	}
	hidden(t, "MESSAGE to the browser", m.String(), tr.pbx.Addr)
	if r, err := tr.browser.Send(ctx(t), sip.MESSAGE, "bob", []byte("hello pbx"), "text/plain"); err != nil || r.StatusCode != 200 {
		t.Fatalf("MESSAGE to the PBX: %v %v", r, err)
	}
	m, err = tr.pbx.WaitRequest(sip.MESSAGE, 5*time.Second)
	if err != nil || string(m.Body()) != "hello pbx" || m.Recipient.User != "bob" || m.From().Address.User != "alice" {
		t.Fatalf("MESSAGE at the PBX: %v %v", m, err)
	}
	hidden(t, "MESSAGE to the PBX", m.String(), ".invalid")

	// BYE from the PBX.
	if err := call.Hangup(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	tr.waitSessions(0)
	tr.waitCalls(0)
	lines := tr.cdrLines()
	if !strings.Contains(lines[len(lines)-1], `"direction":"sip-to-browser"`) || !strings.Contains(lines[len(lines)-1], `"reason":"caller bye"`) {
		t.Fatalf("CDR %s", lines[len(lines)-1])
	}
	mb.Close()
	plain.Close()
	waitGoroutines(t, base, 8)
}

func TestTrunkCancelAndRefusals(t *testing.T) {
	tr := startTrunk(t)
	tr.register(t)

	// CANCEL before answer reaches the PBX; the browser gets 487.
	mb := newBrowserMedia(t)
	call, err := tr.browser.Invite(ctx(t), "bob", []byte(mb.Offer))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	inc.Ring()
	cctx, cancel := context.WithCancel(ctx(t))
	answered := make(chan *sip.Response, 1)
	go func() {
		res, _ := call.WaitAnswer(cctx, "")
		answered <- res
	}()
	for ringing := false; !ringing; {
		select {
		case r := <-call.Provisional:
			ringing = r.StatusCode == 180
		case <-time.After(5 * time.Second):
			t.Fatal("no 180")
		}
	}
	cancel()
	res := <-answered
	select {
	case <-inc.Cancelled():
	case <-time.After(5 * time.Second):
		t.Fatal("the PBX never saw the CANCEL")
	}
	if res == nil || res.StatusCode != 487 {
		t.Fatalf("cancelled call ended with %v", res)
	}
	tr.waitSessions(0)
	tr.waitCalls(0)

	// Busy passes as 486.
	call, _ = tr.browser.Invite(ctx(t), "bob", []byte(newBrowserMedia(t).Offer))
	inc, _ = tr.pbx.WaitCall(5 * time.Second)
	go inc.Reject(486, "Busy Here")
	if res, _ := call.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 486 {
		t.Fatalf("busy: %v", res)
	}
	tr.waitSessions(0)
	tr.waitCalls(0) // its CDR is written before the call is unlisted

	// No codec the trunk takes: 488 without bothering the PBX.
	opusOnly, err := mediatest.NewBrowser(mediatest.BrowserOptions{Codecs: []mediatest.Codec{{PT: 111, Name: "opus", Clock: 48000, Channels: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	defer opusOnly.Close()
	call, _ = tr.browser.Invite(ctx(t), "bob", []byte(opusOnly.Offer))
	if res, _ := call.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 488 {
		t.Fatalf("opus-only offer: %v", res)
	}
	select {
	case d := <-tr.pbx.Incoming:
		t.Fatalf("the PBX got an INVITE it cannot take: %s", d.Invite.Body())
	case <-time.After(100 * time.Millisecond):
	}
	// Malformed SDP: 400.
	call, _ = tr.browser.Invite(ctx(t), "bob", []byte("v=0\r\nthis is not sdp\r\n"))
	if res, _ := call.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 400 {
		t.Fatalf("malformed SDP: %v", res)
	}
	tr.waitSessions(0)
	tr.waitCalls(0)
	lines := tr.cdrLines()
	var causes []string
	for _, l := range lines {
		var r struct{ Cause int }
		json.Unmarshal([]byte(l), &r)
		causes = append(causes, fmt.Sprint(r.Cause))
	}
	// The malformed INVITE never became a call: no record.
	if got := strings.Join(causes, ","); got != "487,486,488" {
		t.Fatalf("CDR causes %s", got)
	}
}

// When the browser's WebSocket closes, its binding goes (upstream too),
// the PBX's calls to it get 430, and once it reconnects and registers
// again it is reachable at once under the same contact.
func TestTrunkFlowFailure(t *testing.T) {
	tr := startTrunk(t)
	binding := tr.register(t)
	contact := tr.browser.Contact
	tr.browser.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(tr.reg.Bindings()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("binding not removed upstream: %v", tr.reg.Bindings())
		}
		time.Sleep(20 * time.Millisecond)
	}
	plain := newPlain(t)
	offer := siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false)
	call, err := tr.pbx.Invite(ctx(t), binding.Contact.User, offer)
	if err != nil {
		t.Fatal(err)
	}
	if res, _ := call.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 430 {
		t.Fatalf("call to a closed flow: %v", res)
	}

	b2, err := siptest.NewBrowser(tr.srv.HTTPAddr(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	b2.Contact = contact // the same browser instance, reconnected
	if res, err := b2.Register(ctx(t), "wonderland", 600); err != nil || res.StatusCode != 200 {
		t.Fatalf("re-register: %v %v", res, err)
	}
	if bs := tr.reg.Bindings(); len(bs) != 1 || bs[0].Contact.User != binding.Contact.User {
		t.Fatalf("the reconnected browser got a new key: %v, was %v", bs, binding.Contact.User)
	}
	call, err = tr.pbx.Invite(ctx(t), binding.Contact.User, offer)
	if err != nil {
		t.Fatal(err)
	}
	inc, err := b2.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	go inc.Reject(486, "Busy Here")
	if res, _ := call.WaitAnswer(ctx(t), ""); res == nil || res.StatusCode != 486 {
		t.Fatalf("call to the reconnected browser: %v", res)
	}
	tr.waitSessions(0)
}
