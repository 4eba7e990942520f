package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// Issue 9 item 3, strait as UAC: the PBX (sipp, uas_100rel.xml) sends its
// early media in a reliable 183, twice before any PRACK; strait sends one
// PRACK (sipp checks RAck and would abort on a second), JsSIP sees one
// 183, and the call connects.
func TestTrunkReliableEarlyMedia(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP, harness.NeedSipp)
	pbx := e.StartSipp(harness.SippConfig{Scenario: "uas_100rel.xml", RTPEcho: true})
	s := e.StartStrait(harness.StraitConfig{Upstream: upstream(pbx.Addr()), Args: []string{"--pbx-authenticates-calls"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice"})
	base := baseline(e, s)
	callConfirmed(e, alice, "sip:1000@127.0.0.1")
	e.Step("the browser saw one 183 for two copies of the reliable one", 5*time.Second, func(ctx context.Context) error {
		var n int
		if err := alice.Eval(ctx, `sip.events.filter((e) => e.name === "progress" && e.data.code === 183).length`, &n); err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("the browser got %d 183s", n)
		}
		return nil
	})
	audioArrives(e, alice, "the echo after reliable early media")
	hangUp(e, alice)
	e.Step("the PBX got one PRACK and the BYE", 10*time.Second, pbx.Wait)
	idle(e, s, base)
}

// Issue 9 item 3, strait as UAS: the PBX (sipp, uac_100rel.xml) calls a
// browser with Require: 100rel; strait sends the browser's 180 reliably
// (Require: 100rel, RSeq), answers the PBX's PRACK, and the call
// connects with the PBX's tone at the browser.
func TestTrunkPBXRequires100rel(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP, harness.NeedSipp)
	registrar := e.StartSipp(harness.SippConfig{Name: "pbx-registrar", Scenario: "uas_register.xml"})
	callerPort := harness.FreePort(t)
	s := e.StartStrait(harness.StraitConfig{Upstream: upstream(registrar.Addr()), Users: []string{"alice:secret"},
		Args: []string{"--upstream", upstream(fmt.Sprintf("127.0.0.1:%d", callerPort)) + ";priority=2"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice", password: "secret", register: true})
	base := baseline(e, s)
	caller := e.StartSipp(harness.SippConfig{Name: "pbx-caller", Scenario: "uac_100rel.xml", Remote: s.SIPAddr, Service: "alice",
		Port: callerPort, Pause: 4 * time.Second})
	e.Step("the call rings in the browser", 15*time.Second, func(ctx context.Context) error { return waitCall(ctx, alice, "progress") })
	e.Step("the PBX PRACKs the reliable 180", 10*time.Second, func(ctx context.Context) error {
		for {
			for _, m := range caller.Sent() {
				if len(m) > 6 && m[:6] == "PRACK " {
					return nil
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("no PRACK sent: %w", ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	e.Step("the browser answers", 10*time.Second, func(ctx context.Context) error {
		if err := alice.Eval(ctx, `sip.answer()`, nil); err != nil {
			return err
		}
		return waitCall(ctx, alice, "confirmed")
	})
	audioArrives(e, alice, "the PBX's tone")
	e.Step("the PBX hangs up and its call succeeded", 20*time.Second, caller.Wait)
	idle(e, s, base)
}

// Issue 9, forking upstream: the PBX side forks JsSIP's INVITE (sipp,
// uas_fork.xml: two 180s, two 200s with different To tags); strait takes
// the first 200, ACKs the second and hangs that branch up (sipp checks
// both tags), and the call goes on with the first branch's echo.
func TestTrunkForkedAnswers(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP, harness.NeedSipp)
	pbx := e.StartSipp(harness.SippConfig{Scenario: "uas_fork.xml", RTPEcho: true})
	s := e.StartStrait(harness.StraitConfig{Upstream: upstream(pbx.Addr()), Args: []string{"--pbx-authenticates-calls"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice"})
	base := baseline(e, s)
	callConfirmed(e, alice, "sip:1000@127.0.0.1")
	audioArrives(e, alice, "the first branch's echo")
	hangUp(e, alice)
	e.Step("the PBX saw ACK and BYE for the second branch, BYE for the first", 10*time.Second, pbx.Wait)
	idle(e, s, base)
}
