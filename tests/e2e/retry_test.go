package e2e

import (
	"testing"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// Issue 9 item 5, end to end: the PBX (sipp, uas_auth_invite.xml)
// challenges JsSIP's INVITE with 407 and ties the challenge to the
// dialog; JsSIP answers it, and strait sends the retry on the same
// Call-ID and From tag with the next CSeq, so sipp (which matches a call
// by its Call-ID and checks the digest) answers, and the echo comes back.
func TestTrunkAuthRetry(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP, harness.NeedSipp)
	pbx := e.StartSipp(harness.SippConfig{Scenario: "uas_auth_invite.xml", RTPEcho: true,
		Keys: map[string]string{"user": "alice", "password": "secret"}})
	s := e.StartStrait(harness.StraitConfig{Upstream: upstream(pbx.Addr()), Args: []string{"--pbx-authenticates-calls"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice", password: "secret"})
	base := baseline(e, s)
	callConfirmed(e, alice, "sip:1000@127.0.0.1")
	audioArrives(e, alice, "the PBX's echo after the challenge")
	hangUp(e, alice)
	e.Step("the PBX saw one dialog, challenged and answered", 10*time.Second, pbx.Wait)
	idle(e, s, base)
}

// Issue 9 item 4, end to end: the PBX (sipp, uas_redirect.xml) forwards
// JsSIP's call with 302 to another user at itself; strait follows it on
// the same dialog (JsSIP itself would not), and the call connects.
func TestTrunkRedirect(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP, harness.NeedSipp)
	pbx := e.StartSipp(harness.SippConfig{Scenario: "uas_redirect.xml", RTPEcho: true})
	s := e.StartStrait(harness.StraitConfig{Upstream: upstream(pbx.Addr()), Args: []string{"--pbx-authenticates-calls"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice"})
	base := baseline(e, s)
	callConfirmed(e, alice, "sip:1000@127.0.0.1")
	audioArrives(e, alice, "the echo of the user the PBX forwarded to")
	hangUp(e, alice)
	e.Step("the PBX saw the redirected INVITE on the same dialog", 10*time.Second, pbx.Wait)
	idle(e, s, base)
}
