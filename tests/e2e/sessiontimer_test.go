package e2e

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/strait-sbc/strait/tests/e2e/harness"
)

// Issue 9, session timers (RFC 4028) with sipp as the peer: sipp
// (uac_session_timer.xml) calls echo supporting timers; strait's 200
// makes it the refresher with Require: timer, and its UPDATE refresh is
// answered with the interval. (That strait ends a call whose refresher
// goes silent, or whose refresh fails, is shown with sipgo peers and a
// shortened second: controlplane/server/sessiontimer_test.go.)
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
