package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// pbxEventPT is the telephone-event payload type uas_echo.xml answers
// with; Chromium offers 126, so seeing 101 at the PBX shows that strait
// mapped the event payload type.
const pbxEventPT = 101

// upstream returns strait's --upstream for a sipp PBX.
func upstream(addr string) string { return "sip:" + addr + ";transport=udp" }

// Scenario 2: trunk mode. JsSIP calls out through Strait to sipp (UAS with
// RTP echo); the call is held and resumed by re-INVITE; DTMF from the
// browser reaches sipp as RFC 4733 telephone-event with the PBX's payload
// type.
func TestTrunkOutboundHoldResumeDTMF(t *testing.T) {
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP, harness.NeedSipp)
	c := capture(e, pbxEventPT)
	pbx := e.StartSipp(harness.SippConfig{Scenario: "uas_echo.xml", RTPEcho: true})
	// sipp plays a PBX that takes calls without registrations, so the
	// browser calls unregistered: Strait must be told the PBX vouches.
	s := e.StartStrait(harness.StraitConfig{Upstream: upstream(pbx.Addr()), Users: []string{"alice:secret"},
		Args: []string{"--pbx-authenticates-calls"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice", password: "secret"})
	base := baseline(e, s)

	callConfirmed(e, alice, "sip:1000@127.0.0.1")
	audioArrives(e, alice, "the PBX's echo")
	pbxMedia(e, c, pbx.MediaPort, pbx.MediaPort, minPackets)

	e.Step("hold: re-INVITE reaches the PBX without sendrecv", 15*time.Second, func(ctx context.Context) error {
		if err := alice.Eval(ctx, `sip.hold()`, nil); err != nil {
			return err
		}
		inv := invites(pbx)
		if len(inv) < 2 {
			return fmt.Errorf("PBX got %d INVITEs, want the re-INVITE", len(inv))
		}
		if !strings.Contains(inv[1], "a=sendonly") && !strings.Contains(inv[1], "a=inactive") {
			return fmt.Errorf("hold re-INVITE at the PBX is neither sendonly nor inactive:\n%s", inv[1])
		}
		return nil
	})
	var held int
	if c != nil {
		held = c.Port(pbx.MediaPort).Packets
	}
	e.Step("resume: re-INVITE, and audio flows again", 15*time.Second, func(ctx context.Context) error {
		if err := alice.Eval(ctx, `sip.unhold()`, nil); err != nil {
			return err
		}
		inv := invites(pbx)
		if len(inv) < 3 || strings.Contains(inv[2], "a=sendonly") || strings.Contains(inv[2], "a=inactive") {
			return fmt.Errorf("PBX got %d INVITEs; the last does not resume", len(inv))
		}
		if c == nil {
			return nil
		}
		for c.Port(pbx.MediaPort).Packets < held+minPackets {
			select {
			case <-ctx.Done():
				return fmt.Errorf("PBX got %d packets since resume, want %d", c.Port(pbx.MediaPort).Packets-held, minPackets)
			case <-time.After(200 * time.Millisecond):
			}
		}
		return nil
	})
	e.Step("DTMF reaches the PBX as telephone-event 101", 10*time.Second, func(ctx context.Context) error {
		if err := alice.Eval(ctx, `sip.dtmf("1#9")`, nil); err != nil {
			return err
		}
		if c == nil {
			t.Log("no packet capture: DTMF sent but not checked at the PBX")
			return nil
		}
		for {
			got := c.Port(pbx.MediaPort)
			if harness.DTMFDigits(got.Events) == "1#9" {
				if got.RTP[126] > 0 {
					return fmt.Errorf("PBX also got %d packets with the browser's event payload type 126", got.RTP[126])
				}
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("PBX got events %q (payload types %v), want 1#9 at payload type %d", harness.DTMFDigits(got.Events), got.RTP, pbxEventPT)
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	hangUp(e, alice)
	e.Step("the PBX got the BYE", 10*time.Second, pbx.Wait)
	idle(e, s, base)
}

// invites returns the INVITE requests the PBX received, in order.
func invites(pbx *harness.Sipp) []string {
	var out []string
	for _, m := range pbx.Received() {
		if strings.HasPrefix(m, "INVITE ") {
			out = append(out, m)
		}
	}
	return out
}

// Scenario 3: trunk mode. sipp calls in (a UAC streaming a tone) to a user
// registered from JsSIP; the browser answers and hears the tone; sipp hangs
// up, and the session is gone from the dataplane.
func TestTrunkInboundToRegisteredUser(t *testing.T) {
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP, harness.NeedSipp)
	c := capture(e)
	// Strait may relay registrations to the PBX in trunk mode: this one
	// accepts them.
	registrar := e.StartSipp(harness.SippConfig{Name: "pbx-registrar", Scenario: "uas_register.xml"})
	s := e.StartStrait(harness.StraitConfig{Upstream: upstream(registrar.Addr()), Users: []string{"alice:secret"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice", password: "secret", register: true})
	base := baseline(e, s)
	e.Step("strait exports a dataplane session gauge", time.Second, func(context.Context) error {
		for _, g := range base.HeldGauges() {
			if strings.Contains(g, "session") {
				return nil
			}
		}
		return fmt.Errorf("no strait_*session* gauge in /metrics (have %v): cannot tell the session is gone", base.HeldGauges())
	})

	caller := e.StartSipp(harness.SippConfig{Name: "pbx-caller", Scenario: "uac_rtpstream.xml", Remote: s.SIPAddr, Service: "alice", Pause: 6 * time.Second})
	// JsSIP answers an incoming INVITE with 180 at once and fires
	// 'progress', so the page's state moves from incoming to progress
	// within a millisecond: wait for the latter.
	e.Step("the call rings in the browser", 15*time.Second, func(ctx context.Context) error { return waitCall(ctx, alice, "progress") })
	e.Step("the browser answers", 10*time.Second, func(ctx context.Context) error {
		if err := alice.Eval(ctx, `sip.answer()`, nil); err != nil {
			return err
		}
		return waitCall(ctx, alice, "confirmed")
	})
	audioArrives(e, alice, "the PBX's tone")
	pbxMedia(e, c, caller.MediaPort, caller.MediaPort+7, minPackets)
	e.Step("the PBX hangs up and its call succeeds", 20*time.Second, caller.Wait)
	e.Step("the browser sees the BYE", 10*time.Second, func(ctx context.Context) error { return waitCall(ctx, alice, "ended") })
	idle(e, s, base)
}
