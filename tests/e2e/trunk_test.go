package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// pbxEventPT is the telephone-event payload type uas_trunk.xml answers
// with; Chromium offers 126, so seeing 101 at the PBX shows that strait
// mapped the event payload type.
const pbxEventPT = 101

// upstream returns strait's --upstream for a sipp PBX.
func upstream(addr string) string { return "sip:" + addr + ";transport=udp" }

// trunkPath is how strait reaches the PBX in a trunk scenario: directly,
// or through Kamailio record-routing (RFC 3261 section 12.1.1: every
// in-dialog request and ACK then passes the proxy, and only if strait
// copied its Record-Route into the responses that made the dialog).
type trunkPath struct {
	name        string
	recordRoute bool
}

var trunkPaths = []trunkPath{{"direct", false}, {"record-route", true}}

// trunkPeer is a PBX stand-in and the address strait's --upstream names:
// the PBX itself, or the proxy in front of it.
type trunkPeer struct {
	upstream string // strait's --upstream
	pbxSide  string // where the PBX sends its requests
}

// viaPath starts Kamailio between strait (at straitAddr) and the PBX (at
// pbxAddr) when the path asks for it.
func viaPath(e *harness.Env, p trunkPath, straitAddr, pbxAddr string) trunkPeer {
	if !p.recordRoute {
		return trunkPeer{upstream: upstream(pbxAddr), pbxSide: straitAddr}
	}
	k := e.StartKamailio(harness.KamailioConfig{Strait: straitAddr, PBX: pbxAddr, RecordRoute: true})
	return trunkPeer{upstream: upstream(k.StraitAddr()), pbxSide: k.PBXAddr()}
}

// Scenario 2: trunk mode, a browser calls the PBX, directly and through a
// record-routing proxy. JsSIP calls sipp (RTP echo) through strait; the
// browser holds and resumes by re-INVITE, then the PBX does; DTMF from the
// browser reaches sipp as RFC 4733 telephone-event with the PBX's payload
// type; the PBX hangs up.
func TestTrunkOutbound(t *testing.T) {
	for _, p := range trunkPaths {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			trunkOutbound(t, p)
		})
	}
}

func trunkOutbound(t *testing.T, path trunkPath) {
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP, harness.NeedSipp, needProxy(path))
	c := capture(e, pbxEventPT)
	pbx := e.StartSipp(harness.SippConfig{Scenario: "uas_trunk.xml", RTPEcho: true})
	straitSIP := harness.FreeAddr(t)
	peer := viaPath(e, path, straitSIP, pbx.Addr())
	// sipp plays a PBX that takes calls without registrations, so the
	// browser calls unregistered: Strait must be told the PBX vouches.
	s := e.StartStrait(harness.StraitConfig{SIPAddr: straitSIP, Upstream: peer.upstream, Users: []string{"alice:secret"},
		Args: []string{"--pbx-authenticates-calls"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice", password: "secret"})
	base := baseline(e, s)

	callConfirmed(e, alice, "sip:1000@127.0.0.1")
	audioArrives(e, alice, "the PBX's echo")
	pbxMedia(e, c, pbx.MediaPort, pbx.MediaPort, minPackets)

	e.Step("the browser holds: the re-INVITE reaches the PBX without sendrecv", 15*time.Second, func(ctx context.Context) error {
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
	e.Step("the browser resumes: re-INVITE, and audio flows again", 15*time.Second, func(ctx context.Context) error {
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
	pbxHolds(e, alice, pbx)
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
	pbxHangsUp(e, alice, pbx)
	idle(e, s, base)
}

// needProxy is the requirement a path adds.
func needProxy(p trunkPath) harness.Requirement {
	if p.recordRoute {
		return harness.NeedKamailio
	}
	return harness.NeedSipp
}

// pbxHolds asks the PBX (by an INFO the sipp scenarios understand) to put
// the call on hold and take it off again, and waits until the browser has
// seen both re-INVITEs and the PBX has ACKed both answers.
func pbxHolds(e *harness.Env, p *harness.Page, pbx *harness.Sipp) {
	e.T().Helper()
	e.Step("the PBX holds and resumes: the browser sees both re-INVITEs", 15*time.Second, func(ctx context.Context) error {
		acks := len(sentACKs(pbx))
		if err := p.Eval(ctx, `sip.info("pbx-hold")`, nil); err != nil {
			return err
		}
		if err := p.WaitFor(ctx, `sip.events.some((e) => e.name === "hold" && e.data.originator === "remote") &&
			sip.events.some((e) => e.name === "unhold" && e.data.originator === "remote")`); err != nil {
			return err
		}
		for len(sentACKs(pbx)) < acks+2 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("the PBX ACKed %d of its 2 re-INVITEs", len(sentACKs(pbx))-acks)
			case <-time.After(50 * time.Millisecond):
			}
		}
		return nil
	})
}

// sentACKs returns the CSeq numbers of the ACKs the PBX sent, each once.
func sentACKs(pbx *harness.Sipp) map[string]bool {
	out := map[string]bool{}
	for _, m := range pbx.Sent() {
		if !strings.HasPrefix(m, "ACK ") {
			continue
		}
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(line, "CSeq:") {
				out[strings.TrimSpace(line)] = true
			}
		}
	}
	return out
}

// pbxHangsUp asks the PBX to send BYE and waits for the browser to see it
// and for the PBX's scenario to succeed.
func pbxHangsUp(e *harness.Env, p *harness.Page, pbx *harness.Sipp) {
	e.T().Helper()
	e.Step("the PBX hangs up: the browser sees the BYE", 10*time.Second, func(ctx context.Context) error {
		if err := p.Eval(ctx, `sip.info("pbx-bye")`, nil); err != nil {
			return err
		}
		return waitCall(ctx, p, "ended")
	})
	e.Step("the PBX's call succeeded", 10*time.Second, pbx.Wait)
}

// invites returns the INVITE requests the PBX received, in order.
func invites(pbx *harness.Sipp) []string {
	return received(pbx, "INVITE")
}

// received returns the requests of a method the PBX received, in order.
func received(pbx *harness.Sipp, method string) []string {
	var out []string
	for _, m := range pbx.Received() {
		if strings.HasPrefix(m, method+" ") {
			out = append(out, m)
		}
	}
	return out
}

// Scenario 3: trunk mode, the PBX calls a browser, directly and through a
// record-routing proxy. sipp (a UAC streaming a tone) calls a user
// registered from JsSIP; the browser answers and hears the tone; the
// browser holds and resumes, then the PBX does; the browser transfers the
// PBX (blind, REFER) and hangs up; the session is gone from the dataplane.
func TestTrunkInbound(t *testing.T) {
	for _, p := range trunkPaths {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			trunkInbound(t, p)
		})
	}
}

func trunkInbound(t *testing.T, path trunkPath) {
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP, harness.NeedSipp, needProxy(path))
	c := capture(e)
	// Strait relays registrations to the PBX in trunk mode: this one
	// accepts them.
	registrar := e.StartSipp(harness.SippConfig{Name: "pbx-registrar", Scenario: "uas_register.xml"})
	straitSIP := harness.FreeAddr(t)
	peer := viaPath(e, path, straitSIP, registrar.Addr())
	callerPort := harness.FreePort(t)
	var args []string
	if !path.recordRoute {
		// Directly, the PBX calls from another address than its
		// registrar's: both are upstreams (strait takes requests from
		// upstreams only, by address, port and transport).
		args = append(args, "--upstream", upstream(fmt.Sprintf("127.0.0.1:%d", callerPort))+";priority=2")
	}
	s := e.StartStrait(harness.StraitConfig{SIPAddr: straitSIP, Upstream: peer.upstream, Users: []string{"alice:secret"}, Args: args})
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

	caller := e.StartSipp(harness.SippConfig{Name: "pbx-caller", Scenario: "uac_trunk.xml", Remote: peer.pbxSide, Service: "alice", Port: callerPort})
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
	e.Step("the browser holds and resumes: the PBX answers both re-INVITEs", 20*time.Second, func(ctx context.Context) error {
		if err := alice.Eval(ctx, `sip.hold()`, nil); err != nil {
			return err
		}
		if err := alice.Eval(ctx, `sip.unhold()`, nil); err != nil {
			return err
		}
		if inv := invites(caller); len(inv) != 2 || !strings.Contains(inv[0], "a=sendonly") {
			return fmt.Errorf("PBX got %d re-INVITEs, want hold and resume:\n%s", len(inv), strings.Join(inv, "\n"))
		}
		return nil
	})
	pbxHolds(e, alice, caller)
	e.Step("the browser transfers the PBX (REFER) and hears it succeeded (NOTIFY)", 15*time.Second, func(ctx context.Context) error {
		if err := alice.Eval(ctx, `sip.refer("sip:2000@127.0.0.1")`, nil); err != nil {
			return err
		}
		refers := received(caller, "REFER")
		if len(refers) != 1 {
			return fmt.Errorf("PBX got %d REFERs", len(refers))
		}
		if !strings.Contains(refers[0], "Refer-To: <sip:2000@") {
			return fmt.Errorf("REFER at the PBX lacks the transfer target:\n%s", refers[0])
		}
		return nil
	})
	hangUp(e, alice)
	e.Step("the PBX got the BYE and its call succeeded", 20*time.Second, caller.Wait)
	idle(e, s, base)
}
