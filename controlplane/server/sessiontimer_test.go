package server

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/strait-sbc/strait/controlplane/siptest"
)

// timerUnit is one second of an RFC 4028 interval in these tests: 90
// "seconds" (the least Min-SE) last 1.8 s, and a peer that stops
// refreshing is given up on 1.2 s after its last refresh (section 10:
// the interval less a third).
const timerUnit = 20 * time.Millisecond

func startTimerTrunk(t *testing.T) *trunk {
	t.Helper()
	return startTrunkOpts(t, nil, func(o *Options) { o.SessionTimerUnit = timerUnit })
}

// callPBX places a browser call to the PBX with hdrs on the INVITE; the
// PBX answers with answerHdrs. It returns the browser's and the PBX's
// dialogs.
func (tr *trunk) callPBX(t *testing.T, hdrs []sip.Header, answerHdrs ...sip.Header) (*siptest.Dialog, *siptest.Dialog) {
	t.Helper()
	mb := newBrowserMedia(t)
	call, err := tr.browser.Invite(ctx(t), "bob", []byte(mb.Offer), hdrs...)
	if err != nil {
		t.Fatal(err)
	}
	inc, err := tr.pbx.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	plain := newPlain(t)
	go inc.AnswerWith(siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false), answerHdrs...)
	res, err := call.WaitAnswer(ctx(t), "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	return call, inc
}

func header(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// A browser that supports timers (JsSIP) calls a PBX that does not: its
// leg gets a timer of its own, the browser refreshes it by UPDATE, which
// Strait answers without troubling the PBX; when the refreshes stop
// (a dead browser whose connection lingers), Strait ends the call by
// signalling: BYE to both (RFC 4028 sections 9 and 10).
func TestSessionTimerBrowserRefreshes(t *testing.T) {
	tr := startTimerTrunk(t)
	tr.register(t)

	// Section 9: an interval below Min-SE from a UAC that supports
	// timers MUST get 422 with Min-SE; an unreadable one gets 400.
	for _, tc := range []struct {
		se   string
		want int
	}{{"60", 422}, {"abc", 400}} {
		c, err := tr.browser.Invite(ctx(t), "bob", []byte(newBrowserMedia(t).Offer), sip.NewHeader("Session-Expires", tc.se))
		if err != nil {
			t.Fatal(err)
		}
		res, _ := c.WaitAnswer(ctx(t), "")
		if res == nil || res.StatusCode != tc.want {
			t.Fatalf("Session-Expires %s: %v, want %d", tc.se, res, tc.want)
		}
		if tc.want == 422 && header(res, "Min-SE") != "90" {
			t.Errorf("422 without Min-SE: 90:\n%s", res)
		}
	}

	call, inc := tr.callPBX(t, []sip.Header{sip.NewHeader("Session-Expires", "90")})
	if got := header(call.Final, "Session-Expires"); got != "90;refresher=uac" || !strings.Contains(header(call.Final, "Require"), "timer") {
		t.Fatalf("the browser's 200: Session-Expires %q, Require %q; want 90;refresher=uac and Require: timer", got, header(call.Final, "Require"))
	}
	if se, sup := header(inc.Invite, "Session-Expires"), header(inc.Invite, "Supported"); se != "90" || !strings.Contains(sup, "timer") {
		t.Errorf("the PBX's INVITE: Session-Expires %q, Supported %q", se, sup)
	}

	// Refreshes every 0.4 s keep the call up past its 1.2 s deadline.
	for i := 0; i < 5; i++ {
		time.Sleep(20 * timerUnit)
		res, err := call.Request(ctx(t), sip.UPDATE, nil, "", sip.NewHeader("Session-Expires", "90;refresher=uac"), sip.NewHeader("Supported", "timer"))
		if err != nil || res.StatusCode != 200 || header(res, "Session-Expires") != "90;refresher=uac" {
			t.Fatalf("refresh %d: %v %v", i, res, err)
		}
	}
	select {
	case <-call.Ended():
		t.Fatal("the call ended although the browser refreshed it")
	default:
	}
	if r, err := tr.pbx.WaitRequest(sip.UPDATE, 10*timerUnit); err == nil {
		t.Fatalf("the browser's refresh reached the PBX:\n%s", r)
	}

	// The browser goes silent: Strait hangs up both legs.
	if err := call.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("the browser got no BYE when its refreshes stopped")
	}
	if err := inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("the PBX got no BYE when the browser's refreshes stopped")
	}
	tr.waitCalls(0)
	tr.waitSessions(0)
	if lines := tr.cdrLines(); len(lines) == 0 || !strings.Contains(lines[len(lines)-1], "session timer expired") {
		t.Errorf("CDR: %v", lines)
	}
}

// The PBX answers with itself as refresher (refresher=uas) and then
// dies: Strait, waiting for its refreshes, ends the call (section 10).
func TestSessionTimerPBXStopsRefreshing(t *testing.T) {
	tr := startTimerTrunk(t)
	tr.register(t)
	call, inc := tr.callPBX(t, nil, sip.NewHeader("Session-Expires", "90;refresher=uas"))
	// The browser named no interval: Strait's default, refreshed by it.
	if got := header(call.Final, "Session-Expires"); got != "1800;refresher=uac" {
		t.Errorf("the browser's 200: Session-Expires %q", got)
	}
	start := time.Now()
	if err := call.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("the browser got no BYE when the PBX stopped refreshing")
	}
	if err := inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("the PBX got no BYE")
	}
	if took := time.Since(start); took < 50*timerUnit {
		t.Errorf("the call ended %v after the answer, before the PBX's deadline", took)
	}
	tr.waitCalls(0)
	tr.waitSessions(0)
}

// The PBX calls the browser and asks Strait to refresh (refresher=uas in
// its INVITE): Strait sends UPDATEs with the interval (section 10, at
// half of it); when a refresh gets 481 (the PBX lost the dialog) Strait
// ends the call (section 10: MUST send BYE); another refusal is retried.
// The browser's 200 makes
// Strait the refresher on its leg too.
func TestSessionTimerStraitRefreshes(t *testing.T) {
	tr := startTimerTrunk(t)
	binding := tr.register(t)
	// The first refresh is refused (500): Strait tries again later; the
	// second gets 481.
	var updates atomic.Int32
	tr.pbx.Reply = func(req *sip.Request) int {
		if req.Method == sip.UPDATE {
			if updates.Add(1) == 1 {
				return 500
			}
			return 481
		}
		return 200
	}
	plain := newPlain(t)
	offer := siptest.PlainSDP(1, plain.Addr(), plain.RTCPAddr(), "sendrecv", false)
	call, err := tr.pbx.Invite(ctx(t), binding.Contact.User, offer, sip.NewHeader("Session-Expires", "90;refresher=uas"))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := tr.browser.WaitCall(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if se := header(inc.Invite, "Session-Expires"); se != "90" {
		t.Errorf("the browser's INVITE: Session-Expires %q", se)
	}
	mb := newAnswerer(t)
	go inc.AnswerWith(mb.answer(t, inc.Invite.Body()), sip.NewHeader("Session-Expires", "90;refresher=uac"))
	res, err := call.WaitAnswer(ctx(t), "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("answer: %v %v", res, err)
	}
	call.Ack(ctx(t))
	if got := header(res, "Session-Expires"); got != "90;refresher=uas" || strings.Contains(header(res, "Require"), "timer") {
		t.Fatalf("the PBX's 200: Session-Expires %q, Require %q", got, header(res, "Require"))
	}
	upd, err := tr.pbx.WaitRequest(sip.UPDATE, 5*time.Second)
	if err != nil {
		t.Fatal("Strait sent no refresh")
	}
	if got := header(upd, "Session-Expires"); got != "90;refresher=uac" || len(upd.Body()) != 0 {
		t.Errorf("Strait's refresh: Session-Expires %q, body %q", got, upd.Body())
	}
	select {
	case <-call.Ended():
		t.Fatal("a refresh refused with 500 ended the call")
	default:
	}
	if _, err := tr.pbx.WaitRequest(sip.UPDATE, 5*time.Second); err != nil {
		t.Fatal("Strait did not refresh again after a 500")
	}
	if err := call.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("the PBX got no BYE")
	}
	if err := inc.WaitEnded(5 * time.Second); err != nil {
		t.Fatal("the browser got no BYE")
	}
	tr.waitCalls(0)
	tr.waitSessions(0)
}
