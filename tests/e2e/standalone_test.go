package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// Scenario 1: JsSIP in Chromium registers through Strait (standalone mode,
// digest auth) and calls echo; the fake microphone's tone comes back.
func TestJsSIPRegisterAndCallEcho(t *testing.T) {
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP)
	s := e.StartStrait(harness.StraitConfig{Users: []string{"alice:secret"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()

	e.Step("a wrong password is refused", 20*time.Second, func(ctx context.Context) error {
		p, err := b.Open(ctx, "mallory", pages.JsSIPURL())
		if err != nil {
			return err
		}
		err = p.Eval(ctx, fmt.Sprintf(`sip.start({ws: %q, uri: "sip:alice@127.0.0.1", password: "wrong"})`, s.WS()), nil)
		if err == nil || !strings.Contains(err.Error(), "registration failed") {
			return fmt.Errorf("registration with a wrong password: %v, want registration failed", err)
		}
		return p.Eval(ctx, `sip.stop()`, nil)
	})
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice", password: "secret", register: true})
	base := baseline(e, s)
	callConfirmed(e, alice, "sip:echo@127.0.0.1")
	audioArrives(e, alice, "its echo")
	e.Step("the API lists the call", 5*time.Second, func(ctx context.Context) error {
		calls, err := s.Calls(ctx)
		if err == nil && len(calls) != 1 {
			err = fmt.Errorf("GET /v1/calls lists %d calls, want 1: %v", len(calls), calls)
		}
		return err
	})
	hangUp(e, alice)
	idle(e, s, base)
}

// Scenario 4: two Chromium pages with JsSIP registered to standalone
// Strait call each other; audio flows both ways.
func TestBrowserToBrowser(t *testing.T) {
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP)
	s := e.StartStrait(harness.StraitConfig{Users: []string{"alice:secret", "bob:hunter2"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice", password: "secret", register: true})
	bob := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "bob", password: "hunter2", register: true, autoAnswer: true})
	base := baseline(e, s)
	callConfirmed(e, alice, "sip:bob@127.0.0.1")
	e.Step("bob's side is confirmed", 10*time.Second, func(ctx context.Context) error { return waitCall(ctx, bob, "confirmed") })
	audioArrives(e, alice, "bob")
	audioArrives(e, bob, "alice")
	hangUp(e, alice)
	e.Step("bob's side ends", 10*time.Second, func(ctx context.Context) error { return waitCall(ctx, bob, "ended") })
	idle(e, s, base)
}

// Issue 9, forking in standalone mode: bob is registered from two JsSIP
// pages (two tabs); alice's call rings both, the second answers, the
// first sees the call cancelled with Reason "Call completed elsewhere"
// (RFC 3326), and audio flows between alice and the tab that answered.
func TestBrowserForkToTwoTabs(t *testing.T) {
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP)
	s := e.StartStrait(harness.StraitConfig{Users: []string{"alice:secret", "bob:hunter2"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice", password: "secret", register: true})
	tab1 := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "bob", password: "hunter2", register: true})
	tab2 := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "bob", password: "hunter2", register: true})
	base := baseline(e, s)
	e.Step("alice calls bob; both tabs ring", 20*time.Second, func(ctx context.Context) error {
		if err := alice.Eval(ctx, `sip.call("sip:bob@127.0.0.1")`, nil); err != nil {
			return err
		}
		for _, p := range []*harness.Page{tab1, tab2} {
			if err := p.WaitFor(ctx, `sip.state.incoming === 1`); err != nil {
				return fmt.Errorf("%s does not ring: %w", p.Name, err)
			}
		}
		return nil
	})
	e.Step("the second tab answers", 20*time.Second, func(ctx context.Context) error {
		if err := tab2.Eval(ctx, `sip.answer()`, nil); err != nil {
			return err
		}
		if err := waitCall(ctx, alice, "confirmed"); err != nil {
			return err
		}
		return waitCall(ctx, tab2, "confirmed")
	})
	e.Step("the first tab is cancelled: answered elsewhere", 10*time.Second, func(ctx context.Context) error {
		if err := tab1.WaitFor(ctx, `sip.state.call === "failed"`); err != nil {
			return err
		}
		var st struct{ Cause, Reason string }
		if err := tab1.Eval(ctx, `sip.state`, &st); err != nil {
			return err
		}
		if st.Cause != "Canceled" || !strings.Contains(st.Reason, "cause=200") || !strings.Contains(st.Reason, "Call completed elsewhere") {
			return fmt.Errorf("first tab: cause %q, CANCEL Reason %q; want Canceled, SIP;cause=200;text=\"Call completed elsewhere\"", st.Cause, st.Reason)
		}
		return nil
	})
	e.Step("strait holds one call and one session", 10*time.Second, func(ctx context.Context) error {
		calls, err := s.Calls(ctx)
		if err == nil && len(calls) != 1 {
			err = fmt.Errorf("GET /v1/calls lists %d calls, want 1: %v", len(calls), calls)
		}
		return err
	})
	audioArrives(e, alice, "bob's second tab")
	audioArrives(e, tab2, "alice")
	hangUp(e, alice)
	e.Step("the second tab's side ends", 10*time.Second, func(ctx context.Context) error { return waitCall(ctx, tab2, "ended") })
	idle(e, s, base)
}

// Issue 9, attended transfer end to end between JsSIP user agents
// (RFC 5589 section 7): alice calls bob, then carol, and refers bob to
// carol replacing her call with carol (REFER with Refer-To ?Replaces=,
// RFC 3891). Bob's JsSIP follows the REFER with an INVITE carrying the
// Replaces, which strait routes to carol; carol's JsSIP takes it in place
// of alice's call. Bob and carol then talk, alice's calls are gone.
func TestBrowserAttendedTransfer(t *testing.T) {
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP)
	s := e.StartStrait(harness.StraitConfig{Users: []string{"alice:secret", "bob:hunter2", "carol:opensesame"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice", password: "secret", register: true})
	bob := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "bob", password: "hunter2", register: true, autoAnswer: true})
	carol := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "carol", password: "opensesame", register: true, autoAnswer: true})
	base := baseline(e, s)
	callConfirmed(e, alice, "sip:bob@127.0.0.1")
	e.Step("bob's side is confirmed", 10*time.Second, func(ctx context.Context) error { return waitCall(ctx, bob, "confirmed") })
	callConfirmed(e, alice, "sip:carol@127.0.0.1")
	e.Step("carol's side is confirmed", 10*time.Second, func(ctx context.Context) error { return waitCall(ctx, carol, "confirmed") })
	e.Step("alice refers bob to carol, replacing her call with carol", 20*time.Second, func(ctx context.Context) error {
		return alice.Eval(ctx, `sip.referReplaces("sip:carol@127.0.0.1").then(() => true)`, nil)
	})
	e.Step("bob's new call is confirmed", 10*time.Second, func(ctx context.Context) error { return waitCall(ctx, bob, "confirmed") })
	e.Step("carol took bob's call in place of alice's", 10*time.Second, func(ctx context.Context) error {
		if err := carol.WaitFor(ctx, `sip.state.otherEnded === true`); err != nil {
			return fmt.Errorf("carol's call with alice did not end: %w", err)
		}
		return waitCall(ctx, carol, "confirmed")
	})
	e.Step("alice hangs up on bob; her call with carol is gone too", 10*time.Second, func(ctx context.Context) error {
		if err := alice.Eval(ctx, `sip.hangupOther()`, nil); err != nil {
			return err
		}
		if err := waitCall(ctx, alice, "ended"); err != nil {
			return err
		}
		return bob.WaitFor(ctx, `sip.state.otherEnded === true`)
	})
	e.Step("strait holds one call: bob and carol", 10*time.Second, func(ctx context.Context) error {
		for {
			calls, err := s.Calls(ctx)
			if err != nil {
				return err
			}
			if len(calls) == 1 {
				if c := calls[0]; c["caller"] != "bob" || c["callee"] != "carol" {
					return fmt.Errorf("the call left is %v, want bob to carol", c)
				}
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("GET /v1/calls lists %d calls, want 1: %v", len(calls), calls)
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	audioArrives(e, bob, "carol")
	audioArrives(e, carol, "bob")
	hangUp(e, bob)
	e.Step("carol's side ends", 10*time.Second, func(ctx context.Context) error { return waitCall(ctx, carol, "ended") })
	idle(e, s, base)
}
