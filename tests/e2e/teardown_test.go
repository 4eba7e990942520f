package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// Scenario 6: calls that end abnormally leave nothing behind: CANCEL before
// the answer, 486 busy, 488 no common codec, and the WebSocket dropped in
// the middle of a call. One strait in trunk mode meets a different sipp PBX
// for each case (all on the port its --upstream names); after each, the
// API lists no call and strait's gauges and goroutines are back at the
// baseline.
func TestAbnormalEndsLeaveNothing(t *testing.T) {
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP, harness.NeedSipp)
	pbxPort := harness.FreePort(t)
	// The sipp PBXs take calls without registrations: the browser calls
	// unregistered, so Strait must be told the PBX vouches.
	s := e.StartStrait(harness.StraitConfig{Upstream: upstream(fmt.Sprintf("127.0.0.1:%d", pbxPort)), Users: []string{"alice:secret"},
		Args: []string{"--pbx-authenticates-calls"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice", password: "secret"})
	base := baseline(e, s)
	pbx := func(scenario string, echo bool) *harness.Sipp {
		return e.StartSipp(harness.SippConfig{Scenario: scenario, Port: pbxPort, RTPEcho: echo, Timeout: 30 * time.Second})
	}
	failsWith := func(ctx context.Context, code int) error {
		if err := waitCall(ctx, alice, "failed"); err != nil {
			return err
		}
		var got int
		alice.Eval(ctx, `sip.state.code`, &got)
		if got != code {
			return fmt.Errorf("call failed with %d, want %d", got, code)
		}
		return nil
	}

	// CANCEL before answer.
	ringing := pbx("uas_ringing.xml", false)
	e.Step("call rings at the PBX", 15*time.Second, func(ctx context.Context) error {
		if err := alice.Eval(ctx, `sip.call("sip:1000@127.0.0.1")`, nil); err != nil {
			return err
		}
		return alice.WaitFor(ctx, `sip.state.call === "progress" && sip.state.code === 180`)
	})
	e.Step("caller cancels; the PBX gets the CANCEL", 15*time.Second, func(ctx context.Context) error {
		if err := alice.Eval(ctx, `sip.hangup()`, nil); err != nil {
			return err
		}
		if err := waitCall(ctx, alice, "failed"); err != nil {
			return err
		}
		return ringing.Wait(ctx)
	})
	idle(e, s, base)

	// 486 busy.
	busy := pbx("uas_busy.xml", false)
	e.Step("PBX busy: the browser gets 486", 15*time.Second, func(ctx context.Context) error {
		if err := alice.Eval(ctx, `sip.call("sip:1000@127.0.0.1")`, nil); err != nil {
			return err
		}
		if err := failsWith(ctx, 486); err != nil {
			return err
		}
		return busy.Wait(ctx)
	})
	idle(e, s, base)

	// 488: the browser offers only Opus, which a G.711 PBX cannot take.
	// Strait may refuse it itself or pass the PBX's 488 on; either way the
	// browser gets 488.
	notAcceptable := pbx("uas_488.xml", false)
	e.Step("no common codec: the browser gets 488", 15*time.Second, func(ctx context.Context) error {
		if err := alice.Eval(ctx, `sip.call("sip:1000@127.0.0.1", {codecs: ["opus"]})`, nil); err != nil {
			return err
		}
		return failsWith(ctx, 488)
	})
	notAcceptable.Stop(time.Second)
	idle(e, s, base)

	// The WebSocket drops mid-call: strait must hang up toward the PBX.
	echo := pbx("uas_echo.xml", true)
	callConfirmed(e, alice, "sip:1000@127.0.0.1")
	audioArrives(e, alice, "the PBX's echo")
	e.Step("WebSocket dropped: the PBX gets a BYE", 20*time.Second, func(ctx context.Context) error {
		if err := alice.Eval(ctx, `sip.dropWebSocket()`, nil); err != nil {
			return err
		}
		return echo.Wait(ctx)
	})
	idle(e, s, base)
}
