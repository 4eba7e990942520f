package server

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/config"
	"github.com/strait-sbc/strait/controlplane/siptest"
)

// trunk is Strait in trunk mode with a PBX (a siptest phone with a digest
// registrar) and a browser registered through it as alice.
type trunk struct {
	*env
	pbx     *siptest.Phone
	reg     *siptest.Registrar
	browser *siptest.Phone
}

func startTrunk(t *testing.T) *trunk {
	t.Helper()
	pbx, err := siptest.NewUDP("", "pbx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pbx.Close)
	reg := pbx.ServeRegistrar(map[string]string{"alice": "wonderland"})
	e := start(t, func(c *config.Config) { c.Upstream = "sip:" + pbx.Addr })
	pbx.Peer = e.srv.SIPAddr()
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
	call.OnReinvite(func(offer []byte) (int, []byte) { return 200, answerOffer(t, mb, offer) })
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
