package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// Issue 9, session timers (RFC 4028) with sipp as the peer: sipp
// (uac_session_timer.xml) calls echo supporting timers; strait's 200
// makes it the refresher with Require: timer, and its UPDATE refresh is
// answered with the interval. (A refresher that goes silent:
// TestSippSessionTimerExpires; a refresh that fails is shown with sipgo
// peers and a shortened second: controlplane/server/sessiontimer_test.go.)
func TestSippSessionTimer(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait, harness.NeedSipp)
	s := e.StartStrait(harness.StraitConfig{})
	base := baseline(e, s)
	uac := e.StartSipp(harness.SippConfig{Scenario: "uac_session_timer.xml", Remote: s.SIPAddr, Service: "echo", Timeout: 30 * time.Second})
	e.Step("sipp's call negotiates a timer and refreshes it by UPDATE", 40*time.Second, func(ctx context.Context) error {
		if err := uac.Wait(ctx); err != nil {
			return err
		}
		if ok, _ := strconv.Atoi(uac.Stats()["SuccessfulCall(C)"]); ok != 1 {
			return fmt.Errorf("sipp: %d successful calls, want 1", ok)
		}
		return nil
	})
	idle(e, s, base)
}

// Issue 9, session-timer expiry end to end: JsSIP calls a sipp PBX
// (uas_session_timer_silent.xml) whose 200 makes it the refresher of a
// 90 s session (Strait's Min-SE) and that never refreshes. Strait ends
// the call itself before the interval runs out (RFC 4028 section 10: 60 s
// after the answer): BYE to the PBX (sipp answers it and ends cleanly)
// and to the browser; the CDR says "session timer expired".
func TestSippSessionTimerExpires(t *testing.T) {
	t.Parallel()
	e := harness.New(t, harness.NeedStrait, harness.NeedChromium, harness.NeedJsSIP, harness.NeedSipp)
	pbxPort := harness.FreePort(t)
	s := e.StartStrait(harness.StraitConfig{Upstream: upstream(fmt.Sprintf("127.0.0.1:%d", pbxPort)), Users: []string{"alice:secret"},
		Args: []string{"--pbx-authenticates-calls"}})
	pages := e.StartPageServer(nil)
	b := e.StartBrowser()
	alice := openJsSIP(e, b, pages, s.WS(), jssipUser{name: "alice", password: "secret"})
	base := baseline(e, s)
	pbx := e.StartSipp(harness.SippConfig{Scenario: "uas_session_timer_silent.xml", Port: pbxPort, RTPEcho: true, Timeout: 120 * time.Second})
	callConfirmed(e, alice, "sip:1000@127.0.0.1")
	answered := time.Now()
	e.Step("strait ends the call when the PBX does not refresh: BYE both ways", 90*time.Second, func(ctx context.Context) error {
		if err := pbx.Wait(ctx); err != nil {
			return fmt.Errorf("sipp (expects strait's BYE): %w", err)
		}
		if err := waitCall(ctx, alice, "ended"); err != nil {
			return err
		}
		// Section 10: before the interval (90 s) runs out, not before
		// the PBX's refresh is due (45 s).
		if d := time.Since(answered); d < 45*time.Second || d > 90*time.Second {
			return fmt.Errorf("call ended %v after the answer, want between 45 s and 90 s", d)
		}
		return nil
	})
	e.Step("the CDR says why", 10*time.Second, func(ctx context.Context) error {
		var raw json.RawMessage
		if _, err := s.Do(ctx, http.MethodGet, "/v1/cdrs", nil, &raw); err != nil {
			return err
		}
		if !strings.Contains(string(raw), `"reason":"session timer expired"`) {
			return fmt.Errorf("no CDR with reason session timer expired: %s", raw)
		}
		return nil
	})
	idle(e, s, base)
}
